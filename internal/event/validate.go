package event

import (
	"fmt"
	"sort"
	"strings"

	"github.com/xeipuuv/gojsonschema"
)

// contextSeparator splits gojsonschema's context path. Its default "." is ambiguous for keys
// that contain dots; a NUL inside a key is far less likely, and would only garble the pointer.
const contextSeparator = "\x00"

// validate runs one compiled schema over a document already decoded (objects as map[string]any,
// numbers as json.Number, which is what gojsonschema reads as JSON numbers) and adds every
// failing field to problems. NewRawLoader hands the value over as it is; NewBytesLoader would
// decode the body a second time and NewGoLoader would encode and decode it again.
func validate(schema *gojsonschema.Schema, doc any, problems *problemList) {
	result, err := schema.Validate(gojsonschema.NewRawLoader(doc))
	if err != nil {
		// A raw loader does not decode, so this is gojsonschema failing on its own.
		problems.add(FieldProblem{Pointer: "", Detail: fmt.Sprintf("cannot be read: %v", err)})
		return
	}
	for _, re := range result.Errors() {
		if p, ok := problemFromSchema(re); ok {
			problems.add(p)
		}
	}
}

// problemFromSchema maps one gojsonschema error onto a pointer and a detail written for the
// person who registered the webhook. Summary errors of if/then/else and allOf are dropped:
// gojsonschema always reports the specific errors they summarise as well.
func problemFromSchema(re gojsonschema.ResultError) (FieldProblem, bool) {
	pointer := pointerFromContext(re.Context())
	details := re.Details()
	switch re.Type() {
	case "condition_then", "condition_else", "number_all_of", "number_any_of", "number_one_of":
		return FieldProblem{}, false
	case "required":
		return FieldProblem{Pointer: pointer + "/" + escapePointerToken(fmt.Sprint(details["property"])), Detail: "is required"}, true
	case "invalid_type":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be %s, got %s", article(fmt.Sprint(details["expected"])), article(fmt.Sprint(details["given"])))}, true
	case "pattern":
		return FieldProblem{Pointer: pointer, Detail: describePattern(fmt.Sprint(details["pattern"]))}, true
	case "string_lte":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be at most %v characters", details["max"])}, true
	case "string_gte":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be at least %v characters", details["min"])}, true
	case "number_lte":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be at most %v", details["max"])}, true
	case "number_gte":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be at least %v", details["min"])}, true
	case "enum":
		return FieldProblem{Pointer: pointer, Detail: fmt.Sprintf("must be one of %v", details["allowed"])}, true
	default:
		return FieldProblem{Pointer: pointer, Detail: re.Description()}, true
	}
}

// Patterns used by the embedded schemas, and what each means to a reader of the error.
const (
	patternGUID          = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
	patternLogicalName   = "^[a-z_][a-z0-9_]*$"
	patternOptionalName  = "^([a-z_][a-z0-9_]*)?$"
	patternMessageName   = "^[A-Za-z][A-Za-z0-9_]*$"
	patternOptionalMsg   = "^([A-Za-z][A-Za-z0-9_]*)?$"
	patternOperationDate = `^(/Date\(-?[0-9]+([+-][0-9]{4})?\)/|[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9:.,+Zz-]*)?)$`
	patternSchemaName    = "^[A-Za-z_][A-Za-z0-9_]*$"
	patternDateTime      = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	patternPascalName    = "^[A-Z][A-Za-z0-9]*$"
	patternEventName     = "^[A-Za-z0-9]+$"
	patternCorrelationID = "^[!-~]+$"
)

func describePattern(pattern string) string {
	switch pattern {
	case patternGUID:
		return "must be a GUID (8-4-4-4-12 hex digits)"
	case patternLogicalName, patternOptionalName:
		return "must be a Dataverse logical name (lower-case letters, digits and _, not starting with a digit)"
	case patternMessageName, patternOptionalMsg:
		return "must be a message name (a letter, then letters, digits and _)"
	case patternOperationDate:
		return `must be a date in the form /Date(<milliseconds>)/ or /Date(<milliseconds>±hhmm)/, or ISO 8601 such as 2026-01-31T09:30:00Z`
	case patternSchemaName:
		return "must be a relationship schema name (letters, digits and _, not starting with a digit)"
	case patternDateTime:
		return "must be an RFC 3339 date-time with Z or an offset, e.g. 2026-01-31T09:30:00Z"
	case patternPascalName:
		return "must be a PascalCase event name, e.g. OpportunityUpdated"
	case patternEventName:
		return "must contain only letters and digits"
	case patternCorrelationID:
		return "must be printable ASCII without spaces"
	default:
		return fmt.Sprintf("does not match %s", pattern)
	}
}

func article(jsonType string) string {
	if alternatives := strings.Trim(jsonType, "[]"); alternatives != jsonType {
		types := strings.Split(alternatives, ",")
		for i, t := range types {
			types[i] = article(t)
		}
		return strings.Join(types, " or ")
	}
	switch jsonType {
	case "array", "integer", "object":
		return "an " + jsonType
	case "null":
		return "null"
	default:
		return "a " + jsonType
	}
}

// pointerFromContext turns gojsonschema's "(root).a.0.b" context into the RFC 6901 pointer
// "/a/0/b".
func pointerFromContext(ctx *gojsonschema.JsonContext) string {
	if ctx == nil {
		return ""
	}
	parts := strings.Split(ctx.String(contextSeparator), contextSeparator)
	var b strings.Builder
	for _, part := range parts[1:] { // parts[0] is "(root)"
		b.WriteByte('/')
		b.WriteString(escapePointerToken(part))
	}
	return b.String()
}

// pointerEscaper escapes a reference token as RFC 6901 says: "~" first, then "/".
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapePointerToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return pointerEscaper.Replace(s)
}

// maxProblems bounds the problems one answer lists. A real payload fails in a handful of places;
// a body built to fail in every item would otherwise cost a line per item, in memory and in the
// answer.
const maxProblems = 100

// problemList collects problems up to maxProblems. Checks that walk many items stop once it is
// full, so a body failing everywhere costs no more than one failing a hundred times.
type problemList struct {
	items []FieldProblem
	// stopped is set when a problem was dropped or a check stopped early because the list was full.
	stopped bool
}

func (l *problemList) add(p FieldProblem) {
	if l.full() {
		l.stopped = true
		return
	}
	l.items = append(l.items, p)
}

func (l *problemList) full() bool { return len(l.items) >= maxProblems }

func (l *problemList) empty() bool { return len(l.items) == 0 }

// newValidationError sorts problems by pointer, keeps the first problem reported for each
// pointer (schema problems are added before the Go checks), and wraps them. When checking
// stopped at maxProblems, a last entry for the whole document says so.
func newValidationError(kind string, problems *problemList) *ValidationError {
	seen := make(map[string]bool, len(problems.items))
	unique := make([]FieldProblem, 0, len(problems.items)+1)
	for _, p := range problems.items {
		if seen[p.Pointer] {
			continue
		}
		seen[p.Pointer] = true
		unique = append(unique, p)
	}
	sort.SliceStable(unique, func(i, j int) bool { return unique[i].Pointer < unique[j].Pointer })
	if problems.stopped {
		unique = append(unique, FieldProblem{Pointer: "", Detail: fmt.Sprintf("checking stopped after the first %d problems", maxProblems)})
	}
	return &ValidationError{Kind: kind, Problems: unique}
}
