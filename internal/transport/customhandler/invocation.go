// Package customhandler speaks the Azure Functions custom handler protocol: it decodes the
// invocation envelope the host posts to /<FunctionName> and writes the {Outputs, Logs,
// ReturnValue} answer the host expects. It knows nothing about Dataverse or about what the
// functions do.
//
// The host's encodings are irregular (see the package tests and their fixtures): strings are
// often JSON-encoded twice, numbers arrive as strings, bodies arrive as text, base64 or not at
// all. Every decoder here is lenient about shape and strict only where a wrong guess would
// corrupt data.
package customhandler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvocation reports an envelope that cannot be read: not JSON, or missing the binding.
var ErrInvocation = errors.New("customhandler: bad invocation")

// Invocation is the host's request envelope: one Data entry per input binding (keyed by the
// binding name in function.json) and the trigger's Metadata. Values are kept raw because their
// encoding depends on the binding.
type Invocation struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// DecodeInvocation reads an envelope. Keys match case-insensitively, as the host's own
// deserialiser does.
func DecodeInvocation(body []byte) (Invocation, error) {
	var inv Invocation
	if err := json.Unmarshal(body, &inv); err != nil {
		return Invocation{}, fmt.Errorf("%w: %w", ErrInvocation, err)
	}
	return inv, nil
}

// binding returns Data[name], matching the name case-insensitively when no exact key exists.
func (inv Invocation) binding(name string) (json.RawMessage, error) {
	if v, ok := inv.Data[name]; ok && !isNull(v) {
		return v, nil
	}
	for k, v := range inv.Data {
		if strings.EqualFold(k, name) && !isNull(v) {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w: no Data.%s", ErrInvocation, name)
}

// meta returns Metadata[key] or nil.
func (inv Invocation) meta(key string) json.RawMessage {
	if v, ok := inv.Metadata[key]; ok && !isNull(v) {
		return v
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// maxUnwrap bounds how many JSON string layers are peeled off one value. The host adds at most
// two; a little slack tolerates a proxy that adds another, without looping on hostile input.
const maxUnwrap = 4

// unwrapString peels JSON string encodings off raw: `"\"evt_01\""` → `evt_01`, `"evt_01"` →
// `evt_01`. A number or bool comes back as its literal text; an object or array as ok=false.
func unwrapString(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || isNull(t) {
		return "", false
	}
	if t[0] != '"' {
		if t[0] == '{' || t[0] == '[' {
			return "", false
		}
		return string(t), true // number, true, false
	}
	var s string
	if err := json.Unmarshal(t, &s); err != nil {
		return "", false
	}
	for range maxUnwrap {
		if !strings.HasPrefix(s, `"`) {
			break
		}
		var inner string
		if err := json.Unmarshal([]byte(s), &inner); err != nil {
			break
		}
		s = inner
	}
	return s, true
}

// metaString reads a Metadata string value, whatever its layers of encoding.
func (inv Invocation) metaString(keys ...string) string {
	for _, k := range keys {
		if s, ok := unwrapString(inv.meta(k)); ok && s != "" {
			return s
		}
	}
	return ""
}

// metaInt reads a Metadata integer sent as a number, a string, or a JSON-encoded string.
func (inv Invocation) metaInt(key string) (int64, bool) {
	s, ok := unwrapString(inv.meta(key))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
