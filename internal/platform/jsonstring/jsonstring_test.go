package jsonstring_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/jsonstring"
)

// encodingJSON is what Append promises to match: encoding/json's Encoder with HTML escaping off,
// without its trailing newline.
func encodingJSON(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppend_writes_what_encoding_json_writes(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "tab\tnew line\ncarriage\r", "\x00\x01\x1f\b\f",
		"<b>markup & more</b>", "line\u2028paragraph\u2029", "invalid \xff utf-8 \xe2\x82", "ünïcödé 日本",
	} {
		got := jsonstring.Append([]byte("prefix"), s)
		want := append([]byte("prefix"), encodingJSON(t, s)...)
		if !bytes.Equal(got, want) {
			t.Errorf("Append(%q) = %s, want %s", s, got, want)
		}
		if b := jsonstring.Append(nil, []byte(s)); !bytes.Equal(b, want[len("prefix"):]) {
			t.Errorf("Append([]byte(%q)) = %s, want %s", s, b, want[len("prefix"):])
		}
	}
}

func FuzzAppend(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\"\\\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := jsonstring.Append(nil, s), encodingJSON(t, s); !bytes.Equal(got, want) {
			t.Fatalf("Append(%q) = %s, want %s", s, got, want)
		}
	})
}
