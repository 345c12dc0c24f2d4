package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/platform/jsonstring"
)

// Application properties are stored as one JSON object. JSON has a single number type, so on
// the way back integral numbers become int64 (the Attempt counter stays an integer) and others
// float64. A time.Time is stored as {"time": "<RFC 3339>"}: the only JSON object a property can
// hold, so it decodes back to a time.Time without ambiguity.

// encodeProps validates the values (AMQP simple types only, as Service Bus accepts) and encodes
// them as encoding/json would (keys sorted, HTML escaping off), without its reflection: it runs on
// every publish, where json.Marshal of the map was a thirtieth of the intake's CPU.
func encodeProps(props map[string]any) (string, error) {
	if len(props) == 0 {
		return "{}", nil
	}
	var room [16]string // the intake's properties fit: the keys sorted without an allocation
	keys := room[:0]
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, 64*len(props))
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(jsonstring.Append(b, k), ':')
		var err error
		if b, err = appendProp(b, props[k]); err != nil {
			return "", fmt.Errorf("application property %q: %w", k, err)
		}
	}
	return string(append(b, '}')), nil
}

// appendProp writes one property's value.
func appendProp(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return jsonstring.Append(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case float32:
		return appendFloat(b, float64(v), 32)
	case float64:
		return appendFloat(b, v, 64)
	case time.Time:
		b = append(b, `{"time":`...)
		return append(jsonstring.Append(b, v.UTC().Format(time.RFC3339Nano)), '}'), nil
	default:
		return b, fmt.Errorf("unsupported type %T (use string, bool, integer, float or time.Time)", v)
	}
}

// appendFloat writes f as encoding/json does: the shortest form that reads back as the same
// float of its size, in exponent form below 1e-6 and from 1e21 on. JSON has no NaN or infinity.
func appendFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, fmt.Errorf("%v has no JSON number", f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// 1e-07 reads better, and as encoding/json writes it, as 1e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// decodeProps is encodeProps in reverse. It always returns a non-nil map.
func decodeProps(s string) (map[string]any, error) {
	if props, ok := decodePlainProps(s); ok {
		return props, nil
	}
	raw := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode application properties: %w", err)
	}
	for k, v := range raw {
		switch v := v.(type) {
		case json.Number:
			if i, err := v.Int64(); err == nil {
				raw[k] = i
				continue
			}
			f, err := v.Float64()
			if err != nil {
				return nil, fmt.Errorf("decode application property %q: %w", k, err)
			}
			raw[k] = f
		case map[string]any:
			s, _ := v["time"].(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("decode application property %q: %w", k, err)
			}
			raw[k] = t
		}
	}
	return raw, nil
}

// decodePlainProps reads, without encoding/json's reflection, what encodeProps writes for every
// message the intake publishes: an object without whitespace, of strings that need no escape,
// numbers, booleans and {"time":...} objects. It runs on every Receive. ok is false for anything
// else, which decodeProps then reads, or refuses, with encoding/json: the two never differ in what
// they return (FuzzDecodeProps).
func decodePlainProps(s string) (props map[string]any, ok bool) {
	if len(s) < 2 || s[0] != '{' {
		return nil, false
	}
	props = make(map[string]any, 8)
	if s == "{}" {
		return props, true
	}
	for i := 1; ; {
		key, n, ok := plainString(s[i:])
		if !ok || i+n >= len(s) || s[i+n] != ':' {
			return nil, false
		}
		i += n + 1
		if props[key], n, ok = plainValue(s[i:]); !ok || i+n >= len(s) {
			return nil, false
		}
		i += n
		switch s[i] {
		case ',':
			i++
		case '}':
			return props, i == len(s)-1
		default:
			return nil, false
		}
	}
}

// plainValue reads the value at the start of s and how many bytes it took.
func plainValue(s string) (v any, n int, ok bool) {
	switch {
	case s == "":
		return nil, 0, false
	case s[0] == '"':
		return plainString(s)
	case strings.HasPrefix(s, "true"):
		return true, 4, true
	case strings.HasPrefix(s, "false"):
		return false, 5, true
	case strings.HasPrefix(s, `{"time":`):
		at, n, ok := plainString(s[len(`{"time":`):])
		n += len(`{"time":`)
		if !ok || n >= len(s) || s[n] != '}' {
			return nil, 0, false
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		return t, n + 1, err == nil
	}
	n = jsonNumberLen(s)
	if n == 0 {
		return nil, 0, false
	}
	if i, err := strconv.ParseInt(s[:n], 10, 64); err == nil {
		return i, n, true
	}
	f, err := strconv.ParseFloat(s[:n], 64)
	return f, n, err == nil
}

// plainString reads a JSON string at the start of s that holds no escape, control character or
// invalid UTF-8 (each of which encoding/json would rewrite), and how many bytes it took.
func plainString(s string) (string, int, bool) {
	if s == "" || s[0] != '"' {
		return "", 0, false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[1:i], i + 1, utf8.ValidString(s[1:i])
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// jsonNumberLen is the length of the JSON number at the start of s (RFC 8259's grammar), or 0.
func jsonNumberLen(s string) int {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return 0
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}

// mergeProps returns the stored properties with update applied on top, encoded again.
func mergeProps(stored string, update map[string]any, remove ...string) (string, error) {
	props, err := decodeProps(stored)
	if err != nil {
		return "", err
	}
	maps.Copy(props, update)
	for _, k := range remove {
		delete(props, k)
	}
	return encodeProps(props)
}
