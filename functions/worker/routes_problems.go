package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xeipuuv/gojsonschema"
)

// RoutesError lists every problem of a routes file at once, in file order, so that one edit
// fixes them all rather than one per start.
type RoutesError struct {
	Path     string
	Problems []RouteProblem
}

// RouteProblem is one problem, placed where an editor finds it.
type RouteProblem struct {
	Line   int // 1-based
	Column int // 1-based, in characters
	Text   string
}

// Error reads as a compiler's: a header naming the file, then one path:line:column line per
// problem, which editors and terminals turn into links.
func (e *RoutesError) Error() string {
	var b strings.Builder
	noun := "problems"
	if len(e.Problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "%s: %d %s:", e.Path, len(e.Problems), noun)
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n%s:%d:%d: %s", e.Path, p.Line, p.Column, p.Text)
	}
	return b.String()
}

// FieldError places a step declaration error at one field of the step, so that the routes file
// error gives that field's line and column. StepTypes may return it; any other error is placed
// at the step itself.
type FieldError struct {
	// Path leads from the step object to the field: {"url"}, {"set", "new_score"}.
	Path []string
	// AtKey places the error at the field's name rather than its value (a bad column name).
	AtKey bool
	Err   error
}

func (e *FieldError) Error() string { return strings.Join(e.Path, ".") + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// jsonPath is a location in a JSON document: object keys and array indexes as strings.
type jsonPath []string

func (p jsonPath) key() string { return strings.Join(p, "\x00") }

func (p jsonPath) with(segs ...string) jsonPath {
	return append(slices.Clip(p), segs...)
}

// positions maps every value of a JSON document, and every object key, to its byte offset.
type positions struct {
	values map[string]int
	keys   map[string]int
}

// indexPositions walks raw, which must be valid JSON, token by token. encoding/json reports
// offsets only for syntax and type errors, so the walk records them itself.
func indexPositions(raw []byte) positions {
	pos := positions{values: make(map[string]int), keys: make(map[string]int)}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var walk func(path jsonPath) error
	walk = func(path jsonPath) error {
		pos.values[path.key()] = valueStart(raw, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				at := valueStart(raw, dec.InputOffset())
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				pos.keys[path.with(key).key()] = at
				if err := walk(path.with(key)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(path.with(strconv.Itoa(i))); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		}
		return err
	}
	_ = walk(nil) // raw was checked by json.Unmarshal first
	return pos
}

// valueStart skips what separates the previous token from the next one.
func valueStart(raw []byte, off int64) int {
	i := int(off)
	for i < len(raw) && strings.IndexByte(" \t\r\n:,", raw[i]) >= 0 {
		i++
	}
	return i
}

// at returns the offset of the value at path, or of the nearest enclosing value found.
func (p positions) at(path jsonPath, atKey bool) int {
	if atKey {
		if off, ok := p.keys[path.key()]; ok {
			return off
		}
	}
	for ; ; path = path[:len(path)-1] {
		if off, ok := p.values[path.key()]; ok {
			return off
		}
		if len(path) == 0 {
			return 0
		}
	}
}

// problemList collects problems with their offsets.
type problemList struct {
	raw   []byte
	pos   positions
	items []placedProblem
}

type placedProblem struct {
	offset int
	text   string
}

func (l *problemList) add(path jsonPath, atKey bool, text string) {
	l.addAt(l.pos.at(path, atKey), text)
}

// addAt places a problem at a byte offset of the file.
func (l *problemList) addAt(offset int, text string) {
	l.items = append(l.items, placedProblem{offset: offset, text: text})
}

// err returns nil when nothing was found, else a *RoutesError in file order.
func (l *problemList) err(path string) error {
	if len(l.items) == 0 {
		return nil
	}
	sort.SliceStable(l.items, func(i, j int) bool { return l.items[i].offset < l.items[j].offset })
	e := &RoutesError{Path: path}
	for i, it := range l.items {
		if i > 0 && it == l.items[i-1] {
			continue
		}
		line, col := lineColumn(l.raw, it.offset)
		e.Problems = append(e.Problems, RouteProblem{Line: line, Column: col, Text: it.text})
	}
	return e
}

func lineColumn(raw []byte, off int) (line, col int) {
	off = min(max(off, 0), len(raw))
	before := raw[:off]
	start := bytes.LastIndexByte(before, '\n') + 1
	return bytes.Count(before, []byte{'\n'}) + 1, utf8.RuneCount(before[start:]) + 1
}

// syntaxProblem places a JSON syntax error. encoding/json reports the offset after the byte
// it could not take; at the end of the input there is no such byte, so the end is shown.
func syntaxProblem(raw []byte, err error) RouteProblem {
	off := len(raw)
	var serr *json.SyntaxError
	if errors.As(err, &serr) && serr.Offset < int64(len(raw)) {
		off = int(max(serr.Offset-1, 0))
	}
	line, col := lineColumn(raw, off)
	return RouteProblem{Line: line, Column: col, Text: "not JSON: " + err.Error()}
}

// schemaProblems checks doc against the embedded schema and words each problem for a person:
// where it is (route and step), which field, and what is wrong, without the schema's regular
// expressions. It returns the steps ("route index/step index") and routes that failed, so that
// the checks of meaning skip them rather than report the same thing twice.
func schemaProblems(doc any, list *problemList) (map[string]bool, error) {
	res, err := gojsonschema.Validate(gojsonschema.NewStringLoader(routesSchema), gojsonschema.NewGoLoader(doc))
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	bad := make(map[string]bool)
	if res.Valid() {
		return bad, nil
	}
	var schema map[string]any
	if err := json.Unmarshal([]byte(routesSchema), &schema); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	for _, e := range res.Errors() {
		switch e.Type() {
		case "condition_then", "condition_else", "number_all_of", "number_any_of", "number_one_of", "const":
			// Wrappers around the specific errors, which are reported too.
			continue
		}
		path := contextPath(e.Context())
		if len(path) >= 4 && path[0] == "routes" && path[2] == "steps" {
			bad[path[:4].key()] = true
		}
		atKey := false
		details := e.Details()
		if e.Type() == "additional_property_not_allowed" {
			if p, ok := details["property"].(string); ok {
				path, atKey = path.with(p), true
			}
		}
		list.add(path, atKey, where(doc, contextPath(e.Context()))+schemaText(schema, doc, e))
	}
	return bad, nil
}

// contextPath turns gojsonschema's context into path segments. Joining with NUL keeps keys
// that hold dots ("x@odata.bind") whole.
func contextPath(c *gojsonschema.JsonContext) jsonPath {
	segs := strings.Split(c.String("\x00"), "\x00")
	if len(segs) > 0 && segs[0] == "(root)" {
		segs = segs[1:]
	}
	return segs
}

// where names a location by route and step, as people know them, and ends with the rest of the
// path: `route "credit-check" step 2 ("write-score"): body: `.
func where(doc any, path jsonPath) string {
	var parts []string
	cur := doc
	i := 0
	for ; i+1 < len(path); i += 2 {
		n, err := strconv.Atoi(path[i+1])
		if (path[i] != "routes" && path[i] != "steps") || err != nil {
			break
		}
		item := index(cur, path[i], n)
		name, _ := lookupKey(item, "name").(string)
		switch {
		case path[i] == "routes" && name != "":
			parts = append(parts, fmt.Sprintf("route %q", name))
		case path[i] == "routes":
			parts = append(parts, fmt.Sprintf("route %d", n+1))
		default:
			parts = append(parts, fmt.Sprintf("step %d (%q)", n+1, name))
		}
		cur = item
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " ") + ": "
}

// fieldOf is the part of path below the innermost route or step: "", "timeout", "body.select".
func fieldOf(path jsonPath) string {
	i := 0
	for i+1 < len(path) && (path[i] == "routes" || path[i] == "steps") {
		if _, err := strconv.Atoi(path[i+1]); err != nil {
			break
		}
		i += 2
	}
	return strings.Join(path[i:], ".")
}

func index(v any, key string, n int) any {
	list, _ := lookupKey(v, key).([]any)
	if n >= 0 && n < len(list) {
		return list[n]
	}
	return nil
}

func lookupKey(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}

// schemaText words one schema error.
func schemaText(schema map[string]any, doc any, e gojsonschema.ResultError) string {
	path := contextPath(e.Context())
	field := fieldOf(path)
	last := ""
	if len(path) > 0 {
		last = path[len(path)-1]
	}
	lead := ""
	if field != "" {
		lead = field + ": "
	}
	d := e.Details()
	switch e.Type() {
	case "required":
		return fmt.Sprintf("%s%v is required", lead, d["property"])
	case "additional_property_not_allowed":
		text := fmt.Sprintf("%sunknown field %q", lead, d["property"])
		if known := knownFields(schema, doc, path); len(known) > 0 {
			text += " (known: " + strings.Join(known, ", ") + ")"
		}
		return text
	case "invalid_type":
		example := ""
		if last == "timeout" {
			example = ` such as "10s"`
		}
		return fmt.Sprintf("%s must be %s%s, not %s", subject(path, field), typeWords(fmt.Sprint(d["expected"])), example, typeWords(fmt.Sprint(d["given"])))
	case "pattern":
		switch last {
		case "name":
			return fmt.Sprintf("name %q must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit", fmt.Sprint(e.Value()))
		case "timeout":
			return fmt.Sprintf("timeout %q is not a duration (e.g. 10s)", fmt.Sprint(e.Value()))
		case "organizationId":
			return fmt.Sprintf("organizationId %q is not a GUID (8-4-4-4-12 hex digits)", fmt.Sprint(e.Value()))
		}
		return fmt.Sprintf("%s %q is not written as expected", subject(path, field), fmt.Sprint(e.Value()))
	case "array_min_items":
		switch last {
		case "routes":
			return "routes: list at least one route"
		case "steps":
			return lead + "list at least one step"
		}
		return lead + "list at least one value"
	case "array_min_properties":
		return lead + "name at least one entry"
	case "string_gte":
		return subject(path, field) + " must not be empty"
	case "enum":
		return fmt.Sprintf("%s %s must be one of %s", subject(path, field), valueWords(e.Value()), strings.Trim(fmt.Sprint(d["allowed"]), "[]"))
	}
	return lead + e.Description()
}

// subject is what a sentence about the value at path starts with.
func subject(path jsonPath, field string) string {
	switch {
	case len(path) == 0:
		return "the file"
	case field == "":
		return "it" // a route or a step, already named by where
	}
	return field
}

func typeWords(t string) string {
	switch t {
	case "string":
		return "a string"
	case "integer", "number":
		return "a number"
	case "boolean":
		return "true or false"
	case "array":
		return "a list"
	case "object":
		return "an object"
	}
	return t
}

func valueWords(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// knownFields lists the fields the schema allows in the object at path, so that a misspelt one
// comes with the right spelling. It follows $ref, properties and items, and for a step the
// if/then of its type.
func knownFields(schema map[string]any, doc any, path jsonPath) []string {
	node := schema
	cur := doc
	resolve := func(n map[string]any) map[string]any {
		if ref, ok := n["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			def, _ := lookupKey(schema["definitions"], name).(map[string]any)
			return def
		}
		return n
	}
	node = resolve(node)
	for _, seg := range path {
		if _, err := strconv.Atoi(seg); err == nil {
			node, _ = node["items"].(map[string]any)
			n, _ := strconv.Atoi(seg)
			list, _ := cur.([]any)
			cur = nil
			if n < len(list) {
				cur = list[n]
			}
		} else {
			node, _ = lookupKey(node["properties"], seg).(map[string]any)
			cur = lookupKey(cur, seg)
		}
		if node == nil {
			return nil
		}
		node = resolve(node)
	}
	known := make(map[string]bool)
	for k := range asMap(node["properties"]) {
		known[k] = true
	}
	all, _ := node["allOf"].([]any)
	for _, c := range all {
		cond := asMap(c)
		if !ifHolds(asMap(cond["if"]), cur) {
			continue
		}
		for k := range asMap(asMap(cond["then"])["properties"]) {
			known[k] = true
		}
	}
	delete(known, "$schema")
	return sortedKeys(known)
}

// ifHolds evaluates the only form of "if" the routes schema uses: properties with a const.
func ifHolds(cond map[string]any, v any) bool {
	props := asMap(cond["properties"])
	if len(props) == 0 {
		return false
	}
	for k, p := range props {
		want, ok := asMap(p)["const"]
		if !ok || lookupKey(v, k) != want {
			return false
		}
	}
	return true
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
