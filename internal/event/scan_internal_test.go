package event

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestPrescan_judges_syntax_as_encoding_json_does(t *testing.T) {
	for _, body := range []string{
		`{}`, " \t\r\n{} \n", `{"a":1}`, `{"a":-0.5e+3}`, `{"a":[1,2,{"b":null}],"c":true,"d":false}`,
		`{"a":"\u00e9\n\"\\\/\b\f\r\t"}`, "{\"a\":\"\xff\xfe\"}", `[]`, `"x"`, `0`, `null`,
		``, ` `, `{`, `}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`,
		"{\"a\":\"\x01\"}", `{"a":"\u12"}`, `{"a":"\x"}`, `{"a":tru}`, `{"a":nul}`, `{"a":1}x`, `{} {}`,
		`{"a" 1}`, `{,}`, `[1,]`, `{"a":[1 2]}`, `{"a":1,}`, `{"a"}`, `{1:2}`, `[`, `["a`, `{"a":[}`,
		`{"a":{]}`, `{"a":"b"` + "\x00" + `}`, "\xef\xbb\xbf{}",
	} {
		if got, want := prescan([]byte(body)).wellFormed, json.Valid([]byte(body)); got != want {
			t.Errorf("%q: well-formed = %v, encoding/json says %v", body, got, want)
		}
	}
}

func TestPrescan_tells_a_plugin_event_by_its_top_level_members(t *testing.T) {
	for body, want := range map[string]bool{
		`{"EventName":"X","RecordId":"y"}`:              true,
		`{"RecordId":"y","a":{"b":1},"EventName":null}`: true,
		`{"\u0045ventName":"X","Record\u0049d":"y"}`:    true,
		`{"EventName":"X"}`:                             false,
		`{"a":{"EventName":"X","RecordId":"y"}}`:        false,
		`{"eventname":"X","recordid":"y"}`:              false,
	} {
		if got := prescan([]byte(body)).plugin; got != want {
			t.Errorf("%s: plugin = %v, want %v", body, got, want)
		}
	}
}

// FuzzPrescan: the scan agrees with encoding/json on syntax; a body it passes is within every
// limit once decoded; every pointer it reports names a value in the body.
func FuzzPrescan(f *testing.F) {
	for _, seed := range []string{
		`{"a":[1,2,{"b":"c"}]}`, `{"a":1e999999}`, `{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
		`{"a/b~c":{"d":` + strings.Repeat("1", 70) + `}}`, `{"EventName":"X","RecordId":"y","ChangedFields":[1e400]}`,
		`{"a":"\u0041"}`, `{"a":[1 2]}`, `[1e999]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		scan := prescan(body)
		if scan.wellFormed != json.Valid(body) {
			t.Fatalf("well-formed = %v, encoding/json says %v", scan.wellFormed, !scan.wellFormed)
		}
		if !scan.object && !scan.problems.empty() {
			t.Fatalf("problems reported for a body that is not an object: %+v", scan.problems.items)
		}
		if !scan.wellFormed || !scan.object {
			return // decode ignores what the scan found and reports the syntax
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var top map[string]any
		if err := dec.Decode(&top); err != nil {
			t.Fatalf("decode: %v", err)
		}
		_, hasName := top["EventName"]
		_, hasID := top["RecordId"]
		if scan.plugin != (hasName && hasID) {
			t.Fatalf("plugin = %v with EventName %v, RecordId %v", scan.plugin, hasName, hasID)
		}
		if scan.problems.empty() {
			if err := withinLimits(top, 1); err != "" {
				t.Fatalf("passed by the scan but %s", err)
			}
			if n := countValues(top); n > maxValues {
				t.Fatalf("passed by the scan with %d values", n)
			}
			return
		}
		for _, p := range scan.problems.items {
			if _, ok := resolve(top, p.Pointer); !ok {
				t.Fatalf("pointer %q names nothing in the body", p.Pointer)
			}
		}
	})
}

// withinLimits walks a decoded value at level depth and says which limit it breaks, if any.
func withinLimits(v any, depth int) string {
	switch v := v.(type) {
	case map[string]any:
		if depth > maxDepth {
			return "an object is nested too deep"
		}
		if len(v) > maxMembers {
			return "an object has too many members"
		}
		for _, child := range v {
			if err := withinLimits(child, depth+1); err != "" {
				return err
			}
		}
	case []any:
		if depth > maxDepth {
			return "an array is nested too deep"
		}
		if len(v) > maxElements {
			return "an array has too many elements"
		}
		for _, child := range v {
			if err := withinLimits(child, depth+1); err != "" {
				return err
			}
		}
	case json.Number:
		if len(v) > maxNumberLength {
			return "a number is too long: " + string(v)
		}
		if _, exp, ok := strings.Cut(strings.ToLower(string(v)), "e"); ok {
			if n, err := strconv.Atoi(strings.TrimLeft(exp, "+-")); err != nil || n > maxExponent {
				return "a number has too large an exponent: " + string(v)
			}
		}
	}
	return ""
}

func countValues(v any) int {
	n := 1
	switch v := v.(type) {
	case map[string]any:
		for _, child := range v {
			n += countValues(child)
		}
	case []any:
		for _, child := range v {
			n += countValues(child)
		}
	}
	return n
}

// resolve follows an RFC 6901 pointer into a decoded value.
func resolve(v any, pointer string) (any, bool) {
	if pointer == "" {
		return v, true
	}
	for _, tok := range strings.Split(pointer, "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}
func BenchmarkPrescan_native_20KB(b *testing.B) {
	body, err := os.ReadFile("testdata/dataverse/albanianxrm-create-account-sync.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if scan := prescan(body); !scan.wellFormed || !scan.problems.empty() {
			b.Fatal("refused")
		}
	}
}
