package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// object is a JSON object decoded with exact, case-sensitive keys. encoding/json matches struct
// fields case-insensitively, so in {"Id":…,"ID":…} a key the schema never checked could win;
// every payload struct below decodes through object instead.
type object map[string]json.RawMessage

func decodeObject(raw []byte) (object, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	if o == nil {
		return nil, errors.New("must be an object, got null")
	}
	return o, nil
}

// into decodes the member name into dst; an absent member leaves dst unchanged, as does null.
func (o object) into(name string, dst any) error {
	raw, ok := o[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// keyValue is one entry of the DataContract {"key":…,"value":…} lists that stand in for every
// dictionary in a RemoteExecutionContext (parameters, images, attributes).
type keyValue struct {
	Key   string
	Value json.RawMessage
}

func (kv *keyValue) UnmarshalJSON(b []byte) error {
	o, err := decodeObject(b)
	if err != nil {
		return err
	}
	kv.Value = o["value"]
	return o.into("key", &kv.Key)
}

// entity is an Entity: a Target of Create/Update, an image, or a member of an EntityCollection.
type entity struct {
	Attributes  []keyValue
	Id          string
	LogicalName string
}

func (e *entity) UnmarshalJSON(b []byte) error {
	o, err := decodeObject(b)
	if err != nil {
		return err
	}
	return errors.Join(o.into("Attributes", &e.Attributes), o.into("Id", &e.Id), o.into("LogicalName", &e.LogicalName))
}

// entityReference is an EntityReference: a lookup value, a Delete Target, OwningExtension.
type entityReference struct {
	Id          string
	LogicalName string
	Name        *string
}

func (r *entityReference) UnmarshalJSON(b []byte) error {
	o, err := decodeObject(b)
	if err != nil {
		return err
	}
	return errors.Join(o.into("Id", &r.Id), o.into("LogicalName", &r.LogicalName), o.into("Name", &r.Name))
}

// lookup is the plain form of an EntityReference in canonical Attributes.
type lookup struct {
	ID          string  `json:"id"`
	LogicalName string  `json:"logicalName"`
	Name        *string `json:"name"`
}

// integerLiteral is the only integer spelling accepted for choice values. JSON Schema's
// "integer" would also allow 1.0 and 1e2; Dataverse writes neither.
var integerLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]{0,17})$`)

// normalizer turns DataContract attribute values into plain JSON and collects every value it
// cannot read, addressed by pointer.
type normalizer struct {
	problems []FieldProblem
}

func (n *normalizer) fail(pointer, format string, args ...any) {
	n.problems = append(n.problems, FieldProblem{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
}

// attributes flattens an Attributes list into a map of plain values. at is the pointer of the
// list itself. Later duplicates of a key win, as they would in the SDK's AttributeCollection.
func (n *normalizer) attributes(list []keyValue, at string, into map[string]json.RawMessage) {
	for i, kv := range list {
		into[kv.Key] = n.value(kv.Value, fmt.Sprintf("%s/%d/value", at, i))
	}
}

// value converts one column value:
//   - Money → its Value as the exact number text (12500.0000 stays 12500.0000);
//   - OptionSetValue → its integer Value; a bare array of them (multi-select) → array of integers;
//   - EntityReference → {"id","logicalName","name"} with a lower-case id;
//   - EntityCollection → array of objects of plain attributes; Entity → object of plain attributes;
//   - "/Date(ms[±hhmm])/" → RFC 3339 UTC string;
//   - strings, numbers (text kept), booleans, null and unknown __type objects → unchanged.
//
// A string that matches the /Date(...)/ grammar is taken as a date: without table metadata a
// text column holding that exact text cannot be told apart, and Dataverse writes every DateTime
// that way.
func (n *normalizer) value(raw json.RawMessage, at string) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	switch raw[0] {
	case '"':
		return n.stringValue(raw, at)
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			n.fail(at, "must be an array")
			return json.RawMessage("null")
		}
		out := make([]json.RawMessage, len(items))
		for i, item := range items {
			out[i] = n.value(item, fmt.Sprintf("%s/%d", at, i))
		}
		return mustMarshal(out)
	case '{':
		return n.typedObject(raw, at)
	default: // number, true, false, null: already plain JSON
		return raw
	}
}

func (n *normalizer) stringValue(raw json.RawMessage, at string) json.RawMessage {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		n.fail(at, "must be a string")
		return json.RawMessage("null")
	}
	if !strings.HasPrefix(s, "/Date(") {
		return raw
	}
	t, err := parseWCFDate(s)
	if errors.Is(err, errNotWCFDate) {
		return raw // text that merely starts like a date
	}
	if err != nil {
		n.fail(at, "is not a valid date: %v", err)
		return json.RawMessage("null")
	}
	return mustMarshal(formatTime(t))
}

func (n *normalizer) typedObject(raw json.RawMessage, at string) json.RawMessage {
	o, err := decodeObject(raw)
	if err != nil {
		n.fail(at, "must be an object")
		return json.RawMessage("null")
	}
	var typ string
	// A non-string __type is left to the schema; such an object passes through unchanged.
	_ = o.into("__type", &typ)
	kind, _, _ := strings.Cut(typ, ":")
	switch kind {
	case "Money":
		var v json.Number
		if err := o.into("Value", &v); err != nil || v == "" {
			n.fail(at+"/Value", "must be a number")
			return json.RawMessage("null")
		}
		return json.RawMessage(v)
	case "OptionSetValue":
		var v json.Number
		if err := o.into("Value", &v); err != nil || !integerLiteral.MatchString(string(v)) {
			n.fail(at+"/Value", "must be an integer")
			return json.RawMessage("null")
		}
		i, _ := strconv.ParseInt(string(v), 10, 64)
		return strconv.AppendInt(nil, i, 10)
	case "EntityReference":
		var ref entityReference
		if err := json.Unmarshal(raw, &ref); err != nil {
			n.fail(at, "must be an EntityReference with Id, LogicalName and Name")
			return json.RawMessage("null")
		}
		return mustMarshal(lookup{ID: strings.ToLower(ref.Id), LogicalName: ref.LogicalName, Name: ref.Name})
	case "EntityCollection":
		var entities []entity
		if err := o.into("Entities", &entities); err != nil {
			n.fail(at+"/Entities", "must be an array of entities")
			return json.RawMessage("null")
		}
		out := make([]map[string]json.RawMessage, len(entities))
		for i, e := range entities {
			out[i] = make(map[string]json.RawMessage, len(e.Attributes))
			n.attributes(e.Attributes, fmt.Sprintf("%s/Entities/%d/Attributes", at, i), out[i])
		}
		return mustMarshal(out)
	case "Entity":
		var e entity
		if err := json.Unmarshal(raw, &e); err != nil {
			n.fail(at+"/Attributes", "must be an array of attributes")
			return json.RawMessage("null")
		}
		out := make(map[string]json.RawMessage, len(e.Attributes))
		n.attributes(e.Attributes, at+"/Attributes", out)
		return mustMarshal(out)
	default:
		return raw
	}
}

// mustMarshal encodes values built from already-valid JSON and plain Go strings; it cannot fail.
func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("event: marshal normalized value: %v", err))
	}
	return b
}
