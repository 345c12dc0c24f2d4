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

// The body is decoded once into generic JSON (objects as map[string]any, numbers as
// json.Number so decimals keep their exact text) and read from there. Map lookups are exact,
// unlike encoding/json's case-insensitive struct matching, which in {"Id":…,"ID":…} could let a
// key the schema never checked win.

// str returns the string member name of o, or "" when it is absent, null or not a string (the
// schema reports wrong types).
func str(o map[string]any, name string) string {
	s, _ := o[name].(string)
	return s
}

// obj returns the object member name of o, or nil.
func obj(o map[string]any, name string) map[string]any {
	m, _ := o[name].(map[string]any)
	return m
}

// list returns the array member name of o, or nil.
func list(o map[string]any, name string) []any {
	a, _ := o[name].([]any)
	return a
}

// keyValue is one entry of the DataContract {"key":…,"value":…} lists that stand in for every
// dictionary in a RemoteExecutionContext (parameters, images, attributes).
type keyValue struct {
	Key   string
	Value any
}

// keyValues reads such a list. An entry that is not an object (the schema reports it) reads as
// an empty entry, so indexes still match the body for pointers.
func keyValues(items []any) []keyValue {
	out := make([]keyValue, len(items))
	for i, item := range items {
		if o, ok := item.(map[string]any); ok {
			out[i] = keyValue{Key: str(o, "key"), Value: o["value"]}
		}
	}
	return out
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
	problems *problemList
}

func (n *normalizer) fail(pointer, format string, args ...any) {
	if n.problems.full() {
		n.problems.stopped = true
		return
	}
	n.problems.add(FieldProblem{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
}

// attributes flattens an Attributes list into plain values. at is the pointer of the list
// itself. Later duplicates of a key win, as they do in the SDK's AttributeCollection.
func (n *normalizer) attributes(items []any, at string, into map[string]any) {
	for i, item := range items {
		o, ok := item.(map[string]any)
		if !ok {
			continue // the schema reports it
		}
		into[str(o, "key")] = n.value(o["value"], at+"/"+strconv.Itoa(i)+"/value")
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
func (n *normalizer) value(v any, at string) any {
	switch v := v.(type) {
	case string:
		return n.stringValue(v, at)
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = n.value(item, at+"/"+strconv.Itoa(i))
		}
		return out
	case map[string]any:
		return n.typedObject(v, at)
	default: // json.Number, bool, nil: already plain JSON
		return v
	}
}

func (n *normalizer) stringValue(s, at string) any {
	if !strings.HasPrefix(s, "/Date(") {
		return s
	}
	t, err := parseWCFDate(s)
	if errors.Is(err, errNotWCFDate) {
		return s // text that merely starts like a date
	}
	if err != nil {
		n.fail(at, "is not a valid date: %v", err)
		return nil
	}
	return FormatTime(t)
}

func (n *normalizer) typedObject(o map[string]any, at string) any {
	kind, _, _ := strings.Cut(str(o, "__type"), ":")
	switch kind {
	case "Money":
		v, ok := o["Value"].(json.Number)
		if !ok {
			n.fail(at+"/Value", "must be a number")
			return nil
		}
		return v
	case "OptionSetValue":
		v, ok := o["Value"].(json.Number)
		if !ok || !integerLiteral.MatchString(string(v)) {
			n.fail(at+"/Value", "must be an integer")
			return nil
		}
		return v
	case "EntityReference":
		ref := lookup{ID: strings.ToLower(str(o, "Id")), LogicalName: str(o, "LogicalName")}
		if name, ok := o["Name"].(string); ok {
			ref.Name = &name
		}
		return ref
	case "EntityCollection":
		entities := list(o, "Entities")
		out := make([]map[string]any, 0, len(entities))
		for i, e := range entities {
			plain := make(map[string]any)
			if e, ok := e.(map[string]any); ok {
				n.attributes(list(e, "Attributes"), at+"/Entities/"+strconv.Itoa(i)+"/Attributes", plain)
			}
			out = append(out, plain)
		}
		return out
	case "Entity":
		plain := make(map[string]any)
		n.attributes(list(o, "Attributes"), at+"/Attributes", plain)
		return plain
	default:
		return o
	}
}

// parameters flattens a parameter list (InputParameters, OutputParameters) into plain values by
// name; at is the pointer of the list. With skipTarget, Target is left out: it is the record,
// read into Attributes and RecordId. Later duplicates of a name win. It returns nil when no
// parameter is left.
func (n *normalizer) parameters(items []keyValue, at string, skipTarget bool) map[string]any {
	var into map[string]any
	for i, kv := range items {
		if skipTarget && kv.Key == "Target" {
			continue
		}
		if into == nil {
			into = make(map[string]any, len(items))
		}
		into[kv.Key] = n.parameterValue(kv.Value, at+"/"+strconv.Itoa(i)+"/value")
	}
	return into
}

// entityValue is the plain form of an Entity passed as a parameter: unlike a column, a parameter
// may hold any table's record, so it keeps its table and id.
type entityValue struct {
	LogicalName string         `json:"logicalName"`
	ID          string         `json:"id,omitempty"` // lower-case; absent when the entity has none (a record to create)
	Attributes  map[string]any `json:"attributes"`
}

// relationshipValue is the plain form of a Relationship parameter.
type relationshipValue struct {
	SchemaName string `json:"schemaName"`
	// PrimaryEntityRole is as Dataverse wrote it (null, or the EntityRole number: 0
	// Referencing, 1 Referenced), set only for a relationship of a table to itself.
	PrimaryEntityRole any `json:"primaryEntityRole"`
}

// parameterValue converts one parameter value as value converts a column, except that an Entity
// becomes {logicalName, id, attributes}, an EntityCollection an array of those, and a
// Relationship {schemaName, primaryEntityRole}. Values inside an entity's attributes are
// columns, converted by value. Bare arrays (string arrays, EntityReferenceCollection,
// OptionSetValueCollection) are converted item by item.
func (n *normalizer) parameterValue(v any, at string) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = n.parameterValue(item, at+"/"+strconv.Itoa(i))
		}
		return out
	case map[string]any:
		switch typeKind(v) {
		case typeEntity:
			return n.entityValue(v, at)
		case typeEntityCollection:
			entities := list(v, "Entities")
			out := make([]entityValue, 0, len(entities))
			for i, e := range entities {
				if e, ok := e.(map[string]any); ok {
					out = append(out, n.entityValue(e, at+"/Entities/"+strconv.Itoa(i)))
				}
			}
			return out
		case typeRelationship:
			return relationshipValue{SchemaName: str(v, "SchemaName"), PrimaryEntityRole: v["PrimaryEntityRole"]}
		}
	}
	return n.value(v, at)
}

func (n *normalizer) entityValue(e map[string]any, at string) entityValue {
	out := entityValue{LogicalName: str(e, "LogicalName"), Attributes: make(map[string]any)}
	if id := strings.ToLower(str(e, "Id")); id != nilGUID {
		out.ID = id
	}
	n.attributes(list(e, "Attributes"), at+"/Attributes", out.Attributes)
	return out
}

// typeKind is the part of a typed value's __type before the first ':', or "" when __type is not
// a string with a ':' (what the checker does not read as a typed value).
func typeKind(o map[string]any) string {
	kind, _, found := strings.Cut(str(o, "__type"), ":")
	if !found {
		return ""
	}
	return kind
}

// encodeAttributes writes each plain value as JSON. HTML escaping is off: the text is data for
// programs, and "&" should stay "&".
func encodeAttributes(plain map[string]any) (map[string]json.RawMessage, error) {
	if len(plain) == 0 {
		return nil, nil
	}
	out := make(map[string]json.RawMessage, len(plain))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for k, v := range plain {
		buf.Reset()
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("encode attribute %s: %w", k, err)
		}
		out[k] = json.RawMessage(bytes.TrimSuffix(bytes.Clone(buf.Bytes()), []byte("\n")))
	}
	return out, nil
}
