package local

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/jsonstring"
)

// propsByEncodingJSON is how the properties were stored before encodeProps wrote them by hand:
// encoding/json over the same values (HTML escaping off, as encodeProps has it). Files written
// either way must read back alike.
func propsByEncodingJSON(t testing.TB, props map[string]any) string {
	out := make(map[string]any, len(props))
	for k, v := range props {
		if tm, ok := v.(time.Time); ok {
			v = map[string]string{"time": tm.UTC().Format(time.RFC3339Nano)}
		}
		out[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestEncodeProps_writes_what_encoding_json_writes_and_reads_back(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.FixedZone("CET", 3600))
	props := map[string]any{
		"EventName": "OpportunityUpdated", "Attempt": int64(3), "quote\"key": "<b>\u2028\xff",
		"i": 7, "i8": int8(-8), "i16": int16(16), "i32": int32(-32), "u8": uint8(8), "u16": uint16(16), "u32": uint32(32),
		"ok": true, "no": false, "f": 2.5, "tiny": 1e-7, "huge": 1e21, "neg": -0.000001, "f32": float32(0.1),
		"whole": 3.0, "at": at,
	}
	got, err := encodeProps(props)
	if err != nil {
		t.Fatal(err)
	}
	if want := propsByEncodingJSON(t, props); got != want {
		t.Errorf("encodeProps =\n%s\nwant\n%s", got, want)
	}
	back, err := decodeProps(got)
	if err != nil {
		t.Fatal(err)
	}
	if back["Attempt"] != int64(3) || back["whole"] != int64(3) || back["f"] != 2.5 || back["tiny"] != 1e-7 ||
		!back["at"].(time.Time).Equal(at) || back["quote\"key"] != "<b>\u2028\ufffd" {
		t.Errorf("read back %#v", back)
	}
	if s, _ := encodeProps(nil); s != "{}" {
		t.Errorf("no properties stored as %q, want {}", s)
	}
}

func TestEncodeProps_names_the_property_it_cannot_store(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{math.NaN(), `application property "p": NaN has no JSON number`},
		{math.Inf(-1), `application property "p": -Inf has no JSON number`},
		{uint64(1), `application property "p": unsupported type uint64`},
		{[]string{"a"}, `application property "p": unsupported type []string`},
	} {
		_, err := encodeProps(map[string]any{"a": "fine", "p": tc.v})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("encodeProps(%#v) error = %v, want it to start %q", tc.v, err, tc.want)
		}
	}
}

func FuzzEncodeProps(f *testing.F) {
	f.Add("k", "v", int64(1), 0.5, float32(1e-7), true)
	f.Add("\u2028", "\x00\xff\"", int64(math.MinInt64), 1e300, float32(3e38), false)
	f.Fuzz(func(t *testing.T, key, s string, i int64, fl float64, f32 float32, b bool) {
		props := map[string]any{key + "s": s, key + "i": i, key + "b": b}
		if !math.IsNaN(fl) && !math.IsInf(fl, 0) {
			props[key+"f"] = fl
		}
		if !math.IsNaN(float64(f32)) && !math.IsInf(float64(f32), 0) {
			props[key+"f32"] = f32
		}
		got, err := encodeProps(props)
		if err != nil {
			t.Fatal(err)
		}
		if want := propsByEncodingJSON(t, props); got != want {
			t.Fatalf("encodeProps =\n%s\nwant\n%s", got, want)
		}
		back, err := decodeProps(got)
		if err != nil {
			t.Fatal(err)
		}
		// A key that is not valid UTF-8 reads back with U+FFFD in place of each bad byte.
		var stored string
		if err := json.Unmarshal(jsonstring.Append(nil, key), &stored); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back[stored+"i"], i) || back[stored+"b"] != b {
			t.Fatalf("read back %#v from %s", back, got)
		}
	})
}

// intakeProps are the properties the intake gives every event.
var intakeProps = map[string]any{
	"Attempt": int64(1), "EventName": "OpportunityUpdated", "Entity": "opportunity",
	"DvrelayCanonical": "5f2c8a0e4b1d7f3a", "OrderKey": "opportunity:6d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8",
	"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}

// BenchmarkEncodeProps stores the intake's properties.
func BenchmarkEncodeProps(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeProps(intakeProps); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecodeProps(f *testing.F) {
	for _, props := range []map[string]any{
		{},
		{"Attempt": int64(1), "EventName": "OpportunityUpdated", "ok": true, "no": false, "f": -2.5e-7},
		{"at": time.Date(2026, 12, 8, 1, 2, 3, 4, time.UTC), "big": 1e21, "n": int64(-9)},
		{"esc": "tab\tquote\"", "bad": "\xff"},
	} {
		s, err := encodeProps(props)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	for _, s := range []string{`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e400}`, `{"a":{"time":"x"}}`, `{"a":1} `, `{"a":null}`, `{"a":[1]}`, `{"a":1,}`, `{"time":{"time":"2026-12-08T00:00:00Z"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := decodePlainProps(s)
		if !ok {
			return
		}
		// What the plain reader takes, encoding/json must read the same.
		raw := map[string]any{}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("plain reader took %q, encoding/json refuses it: %v", s, err)
		}
		slow, err := decodeProps(s + " ") // a trailing space keeps decodeProps off the plain reader
		if err != nil {
			t.Fatalf("plain reader took %q, decodeProps refuses it: %v", s, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: plain reader %#v, encoding/json %#v", s, fast, slow)
		}
	})
}

func TestDecodeProps_reads_what_encodeProps_wrote_without_encoding_json(t *testing.T) {
	props := map[string]any{"Attempt": int64(2), "EventName": "OpportunityUpdated", "at": time.Date(2026, 12, 8, 1, 2, 3, 4, time.UTC), "f": 0.25, "ok": true}
	s, err := encodeProps(props)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodePlainProps(s)
	if !ok {
		t.Fatalf("the plain reader refused %s", s)
	}
	if !reflect.DeepEqual(got, props) {
		t.Errorf("read back %#v, want %#v", got, props)
	}
}

// BenchmarkDecodeProps reads back what BenchmarkEncodeProps stores, as every Receive does.
func BenchmarkDecodeProps(b *testing.B) {
	stored, err := encodeProps(intakeProps)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeProps(stored); err != nil {
			b.Fatal(err)
		}
	}
}
