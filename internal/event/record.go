package event

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The items of the long lists in a payload (InputParameters, OutputParameters, PostEntityImages,
// PreEntityImages and every Attributes list inside them; a plugin event's ChangedFields) are checked here, in Go,
// and not by gojsonschema. The embedded schemas still describe them and remain the contract: the
// tests hold these checks to the schemas' verdicts, pointer for pointer and word for word
// (record_internal_test.go).
//
// Why: gojsonschema builds and formats an error, through text/template, for every rule a value
// breaks and for every if/then branch it tries and does not take: a valid payload paid for dozens
// of discarded errors in the typed-value dispatch, a body of many bad attributes paid for every
// one of them, and a validator cannot be told to stop early. Here a check costs a map lookup and
// stops once maxProblems are found.

// envelope is the document the schema validator sees: top with each of lists that is a
// non-empty array replaced by an empty one, so the schema still checks the member's type but
// not its items (the checker's), and each of members left out (the checker checks them whole).
// top itself is left as it is.
func envelope(top map[string]any, lists []string, members ...string) map[string]any {
	var view map[string]any
	for _, name := range lists {
		if items, ok := top[name].([]any); ok && len(items) > 0 {
			if view == nil {
				view = maps.Clone(top)
			}
			view[name] = []any{}
		}
	}
	for _, name := range members {
		if _, ok := top[name]; ok {
			if view == nil {
				view = maps.Clone(top)
			}
			delete(view, name)
		}
	}
	if view == nil {
		return top
	}
	return view
}

// token is one step of a pointer: a member name, or an array index when index >= 0.
type token struct {
	name  string
	index int
}

// checker walks decoded items the way the schema definitions would, adding what fails to
// problems. It keeps the path as tokens and renders a pointer only for a failure, so a valid
// payload costs no strings.
type checker struct {
	path     []token
	problems *problemList
}

func (c *checker) enter(name string) { c.path = append(c.path, token{name: name, index: -1}) }
func (c *checker) enterIndex(i int)  { c.path = append(c.path, token{index: i}) }
func (c *checker) leave()            { c.path = c.path[:len(c.path)-1] }

func (c *checker) pointer(extra ...string) string {
	var b strings.Builder
	for _, t := range c.path {
		b.WriteByte('/')
		if t.index >= 0 {
			b.WriteString(strconv.Itoa(t.index))
		} else {
			b.WriteString(escapePointerToken(t.name))
		}
	}
	for _, name := range extra {
		b.WriteByte('/')
		b.WriteString(escapePointerToken(name))
	}
	return b.String()
}

func (c *checker) fail(detail string) {
	c.problems.add(FieldProblem{Pointer: c.pointer(), Detail: detail})
}

// The messages below are the ones problemFromSchema gives for the same schema errors.

func (c *checker) failType(expected string, v any) {
	c.fail(fmt.Sprintf("must be %s, got %s", article(expected), article(jsonType(v))))
}

// object checks that v is an object and that each of required is present, as a schema
// {"type":"object","required":[…]} does.
func (c *checker) object(v any, required ...string) (map[string]any, bool) {
	o, ok := v.(map[string]any)
	if !ok {
		c.failType("object", v)
		return nil, false
	}
	for _, name := range required {
		if _, ok := o[name]; !ok {
			c.problems.add(FieldProblem{Pointer: c.pointer(name), Detail: "is required"})
		}
	}
	return o, true
}

// member runs check on o[name] with the path at that member, when it is present.
func (c *checker) member(o map[string]any, name string, check func(any)) {
	v, ok := o[name]
	if !ok {
		return
	}
	c.enter(name)
	check(v)
	c.leave()
}

// items runs check on each item of v, with the path at the item, until the list is full.
func (c *checker) items(v []any, check func(any)) {
	for i, item := range v {
		if c.problems.full() {
			c.problems.stopped = true
			return
		}
		c.enterIndex(i)
		check(item)
		c.leave()
	}
}

// list checks that v is an array ({"type":"array","items":…}) and checks its items.
func (c *checker) list(v any, check func(any)) {
	a, ok := v.([]any)
	if !ok {
		c.failType("array", v)
		return
	}
	c.items(a, check)
}

func (c *checker) str(v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		c.failType("string", v)
	}
	return s, ok
}

// #/definitions/guid
func (c *checker) guid(v any) {
	if s, ok := c.str(v); ok && !isGUID(s) {
		c.fail(describePattern(patternGUID))
	}
}

// #/definitions/logicalName: gojsonschema checks maxLength before pattern, and the first
// problem for a pointer is the one kept.
func (c *checker) logicalName(v any) {
	s, ok := c.str(v)
	if !ok {
		return
	}
	if utf8.RuneCountInString(s) > maxLogicalNameLength {
		c.fail(fmt.Sprintf("must be at most %d characters", maxLogicalNameLength))
	}
	if !logicalName.MatchString(s) {
		c.fail(describePattern(patternLogicalName))
	}
}

// remoteLists are the members of a RemoteExecutionContext whose items the checker reads.
func remoteLists() []string {
	return []string{"InputParameters", "OutputParameters", "PostEntityImages", "PreEntityImages"}
}

// stepMembers are the members, of a RemoteExecutionContext and of a canonical event, that say
// how the step that posted is registered. They are checked here rather than by the validator:
// its enum and integer rules marshal each value and build a big.Rat, which for three small
// numbers every event carries cost more than the rest of the envelope.
func stepMembers() []string { return []string{"Stage", "Mode", "IsInTransaction"} }

// step checks stepMembers as the schemas' properties Stage, Mode and IsInTransaction do.
func (c *checker) step(top map[string]any) {
	c.member(top, "Stage", func(v any) { c.integerEnum(v, "10, 20, 40", 10, 20, 40) })
	c.member(top, "Mode", func(v any) { c.integerEnum(v, "0, 1", 0, 1) })
	c.member(top, "IsInTransaction", func(v any) {
		if _, ok := v.(bool); !ok {
			c.failType("boolean", v)
		}
	})
}

// integerEnum checks {"type":"integer","enum":allowed}: gojsonschema reports a type error
// alone, else an enum error. Its enum compares a number's float64 as encoding/json writes it, so
// 10.0 and 1e1 are 10, but -0 is not 0.
func (c *checker) integerEnum(v any, words string, allowed ...int64) {
	n, ok := v.(json.Number)
	if !ok {
		c.failType("integer", v)
		return
	}
	for _, a := range allowed {
		if string(n) == strconv.FormatInt(a, 10) {
			return // the spelling Dataverse writes, without building a number
		}
	}
	if jsonType(v) != "integer" {
		c.failType("integer", v)
		return
	}
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && !(f == 0 && math.Signbit(f)) {
		for _, a := range allowed {
			if f == float64(a) {
				return
			}
		}
	}
	c.fail("must be one of " + words)
}

// canonical checks a canonical event's stepMembers.
func (c *checker) canonical(top map[string]any) { c.step(top) }

// remote checks the record data of a RemoteExecutionContext (the items of remoteLists) and its
// stepMembers.
func (c *checker) remote(top map[string]any) {
	c.step(top)
	if params, ok := top["InputParameters"].([]any); ok {
		c.enter("InputParameters")
		c.items(params, c.inputParameter)
		c.leave()
	}
	if params, ok := top["OutputParameters"].([]any); ok {
		c.enter("OutputParameters")
		c.items(params, c.parameter)
		c.leave()
	}
	for _, name := range []string{"PostEntityImages", "PreEntityImages"} {
		if images, ok := top[name].([]any); ok {
			c.enter(name)
			c.items(images, c.image)
			c.leave()
		}
	}
}

// #/definitions/inputParameter. Its "if" ({"properties":{"key":{"const":"Target"}}}) holds when
// key is "Target" and also when key is absent, since properties constrain only what is present;
// every other parameter (a custom API's inputs, EntityMoniker, Relationship) is a typed value.
func (c *checker) inputParameter(v any) {
	o, ok := c.object(v, "key", "value")
	if !ok {
		return
	}
	c.member(o, "key", func(v any) { c.str(v) })
	if key, hasKey := o["key"]; !hasKey || key == "Target" {
		c.member(o, "value", c.target)
	} else {
		c.member(o, "value", c.typedValue)
	}
}

// #/definitions/parameter: an output parameter.
func (c *checker) parameter(v any) {
	o, ok := c.object(v, "key", "value")
	if !ok {
		return
	}
	c.member(o, "key", func(v any) { c.str(v) })
	c.member(o, "value", c.typedValue)
}

// #/definitions/target: an Entity when it has Attributes, else an EntityReference.
func (c *checker) target(v any) {
	o, ok := c.object(v)
	if !ok {
		return
	}
	if _, ok := o["Attributes"]; ok {
		c.entity(o)
	} else {
		c.entityReference(o)
	}
}

// #/definitions/image
func (c *checker) image(v any) {
	o, ok := c.object(v, "key", "value")
	if !ok {
		return
	}
	c.member(o, "key", func(v any) { c.str(v) })
	c.member(o, "value", c.entity)
}

// #/definitions/entity
func (c *checker) entity(v any) {
	o, ok := c.object(v, "Attributes", "LogicalName")
	if !ok {
		return
	}
	c.member(o, "Attributes", func(v any) { c.list(v, c.attribute) })
	c.member(o, "Id", c.guid)
	c.member(o, "LogicalName", c.logicalName)
}

// #/definitions/entityReference
func (c *checker) entityReference(v any) {
	o, ok := c.object(v, "Id", "LogicalName")
	if !ok {
		return
	}
	c.member(o, "Id", c.guid)
	c.member(o, "LogicalName", c.logicalName)
	c.member(o, "Name", func(v any) {
		if _, ok := v.(string); !ok && v != nil {
			c.failType("[string,null]", v)
		}
	})
}

// #/definitions/attribute
func (c *checker) attribute(v any) {
	o, ok := c.object(v, "key", "value")
	if !ok {
		return
	}
	c.member(o, "key", c.logicalName)
	c.member(o, "value", c.typedValue)
}

// #/definitions/typedValue: arrays item by item; objects with a __type member as typedObject.
func (c *checker) typedValue(v any) {
	switch v := v.(type) {
	case []any:
		c.items(v, c.typedValue)
	case map[string]any:
		if _, ok := v["__type"]; ok {
			c.typedObject(v)
		}
	}
}

// Typed values, by the part of __type before the first ':'.
const (
	typeMoney            = "Money"
	typeOptionSetValue   = "OptionSetValue"
	typeEntityReference  = "EntityReference"
	typeEntityCollection = "EntityCollection"
	typeEntity           = "Entity"
	typeRelationship     = "Relationship"
)

// #/definitions/typedObject. Each branch's "if" is a pattern on __type; a pattern says nothing
// about a value that is not a string, so when __type is not a string every branch applies.
func (c *checker) typedObject(o map[string]any) {
	name, isString := o["__type"].(string)
	if !isString {
		c.member(o, "__type", func(v any) { c.failType("string", v) })
	}
	applies := func(kind string) bool { return !isString || strings.HasPrefix(name, kind+":") }
	number := func(v any) {
		if _, ok := v.(json.Number); !ok {
			c.failType("number", v)
		}
	}
	if applies(typeMoney) {
		c.object(o, "Value")
		c.member(o, "Value", number)
	}
	if applies(typeOptionSetValue) {
		c.object(o, "Value")
		c.member(o, "Value", number)
	}
	if applies(typeEntityReference) {
		c.entityReference(o)
	}
	if applies(typeEntityCollection) {
		c.object(o, "Entities")
		c.member(o, "Entities", func(v any) { c.list(v, c.entity) })
	}
	if applies(typeEntity) {
		c.entity(o)
	}
	if applies(typeRelationship) {
		c.object(o, "SchemaName")
		c.member(o, "SchemaName", c.schemaName)
	}
}

// #/definitions/schemaName: maxLength before pattern, as gojsonschema checks them.
func (c *checker) schemaName(v any) {
	s, ok := c.str(v)
	if !ok {
		return
	}
	if utf8.RuneCountInString(s) > maxSchemaNameLength {
		c.fail(fmt.Sprintf("must be at most %d characters", maxSchemaNameLength))
	}
	if !isSchemaName(s) {
		c.fail(describePattern(patternSchemaName))
	}
}

const maxSchemaNameLength = 256

// isSchemaName matches patternSchemaName without a regular expression.
func isSchemaName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// plugin checks the items of a plugin event's ChangedFields.
func (c *checker) plugin(top map[string]any) {
	if fields, ok := top["ChangedFields"].([]any); ok {
		c.enter("ChangedFields")
		c.items(fields, c.logicalName)
		c.leave()
	}
}

// jsonType names the JSON type of a decoded value as gojsonschema does: a number with no
// fractional part (1, 1.0, 1e2) is an "integer".
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		// The pre-scan has bounded the literal, so the exact value is cheap.
		if r, ok := new(big.Rat).SetString(string(v)); ok && r.IsInt() {
			return "integer"
		}
		return "number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// isGUID matches patternGUID without a regular expression: 8-4-4-4-12 hex digits.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
