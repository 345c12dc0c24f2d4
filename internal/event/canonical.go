package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// openMembers are the canonical event's members whose values are objects of any JSON (column
// values, parameters): the schema checks their member names alone, and Event keeps each value
// as raw JSON. Decoding those values into a tree only to encode them again was a third of what
// the worker spent reading an event.
var openMembers = []string{"Attributes", "Parameters", "OutputParameters"}

// canonicalBody is a canonical event as decodeCanonicalBody reads it.
type canonicalBody struct {
	// top holds the members as buildTree gives them, but an open member's object as its member
	// names, each mapped to nil: what the schema and the checks read.
	top map[string]any
	// open holds each open member's values as raw JSON.
	open map[string]map[string]json.RawMessage
	// related is the raw text of the RelatedRecords member.
	related []byte
	// repeated names the members that appear more than once. encoding/json would let the last
	// one win, or merge two objects, so a repeated member could change what the schema checked;
	// DecodeCanonical refuses it, as it refuses members differing only in case.
	repeated []string
}

// decodeCanonicalBody reads a body the pre-scan has accepted (one well-formed JSON object within
// the limits).
func decodeCanonicalBody(body []byte) canonicalBody {
	raw := bytes.Clone(body) // the raw values are slices of one copy, not of the caller's buffer
	t := treeBuilder{src: string(body)}
	cb := canonicalBody{top: map[string]any{}, open: map[string]map[string]json.RawMessage{}}
	t.space()
	t.pos++ // '{'
	t.members(func(key string) {
		if _, seen := cb.top[key]; seen {
			cb.repeated = append(cb.repeated, key)
		}
		start := t.pos
		if slices.Contains(openMembers, key) && t.src[t.pos] == '{' {
			t.pos++
			names, values := map[string]any{}, map[string]json.RawMessage{}
			t.members(func(name string) {
				valueStart := t.pos
				t.skip()
				values[name] = json.RawMessage(raw[valueStart:t.pos:t.pos])
				names[name] = nil
			})
			cb.top[key], cb.open[key] = names, values
		} else {
			cb.top[key] = t.value()
		}
		if key == "RelatedRecords" {
			cb.related = raw[start:t.pos:t.pos]
		}
	})
	return cb
}

// skip moves past one well-formed value.
func (t *treeBuilder) skip() {
	switch t.src[t.pos] {
	case '"':
		t.skipString()
	case '{', '[':
		depth := 0
		for {
			switch t.src[t.pos] {
			case '"':
				t.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			t.pos++
			if depth == 0 {
				return
			}
		}
	default: // a number or a literal, up to what follows it
		for t.pos < len(t.src) {
			switch t.src[t.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			t.pos++
		}
	}
}

func (t *treeBuilder) skipString() {
	t.pos++ // the opening quote
	for t.src[t.pos] != '"' {
		if t.src[t.pos] == '\\' {
			t.pos++
		}
		t.pos++
	}
	t.pos++
}

// event builds the Event the members give, with encoding/json's rules for each field: null
// leaves a field as it is (nil for a pointer, a slice or a map), and an integer field takes only
// an integer literal. A member of the wrong type is an error; the schema will have named it.
func (cb canonicalBody) event() (Event, error) {
	var ev Event
	strs := []struct {
		name string
		dst  *string
	}{
		{"SchemaVersion", &ev.SchemaVersion}, {"EventId", &ev.EventID}, {"CorrelationId", &ev.CorrelationID},
		{"EventName", &ev.EventName}, {"Entity", &ev.Entity}, {"Message", &ev.Message}, {"RecordId", &ev.RecordID},
		{"TriggeredBy", &ev.TriggeredBy}, {"Timestamp", &ev.Timestamp}, {"OrganizationId", &ev.OrganizationID},
		{"Source", &ev.Source}, {"Relationship", &ev.Relationship},
	}
	for _, f := range strs {
		switch v := cb.top[f.name].(type) {
		case nil:
		case string:
			*f.dst = v
		default:
			return Event{}, fmt.Errorf("%s: %s is not a string", f.name, jsonType(v))
		}
	}
	switch v := cb.top["ChangedFields"].(type) {
	case nil:
	case []any:
		ev.ChangedFields = make([]string, len(v))
		for i, item := range v {
			switch s := item.(type) {
			case nil:
			case string:
				ev.ChangedFields[i] = s
			default:
				return Event{}, fmt.Errorf("ChangedFields/%d: %s is not a string", i, jsonType(item))
			}
		}
	default:
		return Event{}, fmt.Errorf("ChangedFields: %s is not an array", jsonType(v))
	}
	for _, f := range []struct {
		name string
		dst  *map[string]json.RawMessage
	}{{"Attributes", &ev.Attributes}, {"Parameters", &ev.Parameters}, {"OutputParameters", &ev.OutputParameters}} {
		switch v := cb.top[f.name].(type) {
		case nil:
		case map[string]any:
			*f.dst = cb.open[f.name]
		default:
			return Event{}, fmt.Errorf("%s: %s is not an object", f.name, jsonType(v))
		}
	}
	for _, f := range []struct {
		name string
		set  func(bool)
	}{{"Trimmed", func(b bool) { ev.Trimmed = b }}, {"IsInTransaction", func(b bool) { ev.IsInTransaction = &b }}} {
		switch v := cb.top[f.name].(type) {
		case nil:
		case bool:
			f.set(v)
		default:
			return Event{}, fmt.Errorf("%s: %s is not a boolean", f.name, jsonType(v))
		}
	}
	for _, f := range []struct {
		name string
		set  func(int)
	}{{"Depth", func(n int) { ev.Depth = n }}, {"Stage", func(n int) { ev.Stage = n }}, {"Mode", func(n int) { ev.Mode = &n }}} {
		if v := cb.top[f.name]; v != nil {
			n, err := intMember(f.name, v)
			if err != nil {
				return Event{}, err
			}
			f.set(n)
		}
	}
	if cb.related != nil {
		if err := json.Unmarshal(cb.related, &ev.RelatedRecords); err != nil {
			return Event{}, fmt.Errorf("RelatedRecords: %w", err)
		}
	}
	return ev, nil
}

// intMember reads an integer member as encoding/json reads an int: its literal must be an
// integer without fraction or exponent, within int's range.
func intMember(name string, v any) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: %s is not a number", name, jsonType(v))
	}
	n, err := strconv.ParseInt(string(num), 10, strconv.IntSize)
	if err != nil {
		return 0, fmt.Errorf("%s: %s is not an integer", name, num)
	}
	return int(n), nil
}
