package worker

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/xeipuuv/gojsonschema"
)

// Routes are declared in routes.json, not coded. Every route whose match holds runs, in file
// order, one after the other: the default file relies on it (an opportunity goes through the
// credit route and the catch-all log route). A delivery is one unit of work: if a step of any
// route fails, the outcome covers the whole event, and a retry runs every matching route again
// (safe, since each downstream call carries Idempotency-Key: <EventId>).

//go:embed routes.schema.json
var routesSchema string

// defaultStepTimeout bounds one try of a step that declares no timeout.
const defaultStepTimeout = 10 * time.Second

// maxStepTimeout keeps a single try well inside a Service Bus lock.
const maxStepTimeout = 2 * time.Minute

type routeDecl struct {
	Name  string            `json:"name"`
	Match matchDecl         `json:"match"`
	Steps []json.RawMessage `json:"steps"`
}

type matchDecl struct {
	Entity     string   `json:"entity"`
	Messages   []string `json:"messages"`
	EventName  string   `json:"eventName"`
	AnyChanged []string `json:"anyChanged"`
}

// matches reports whether every condition given holds for ev. Names compare case-insensitively:
// Dataverse logical names are lower case, but message and event names are not always written
// the same way by hand.
func (m matchDecl) matches(ev *event.Event) bool {
	if m.Entity != "" && !strings.EqualFold(m.Entity, ev.Entity) {
		return false
	}
	if len(m.Messages) > 0 && !slices.ContainsFunc(m.Messages, func(s string) bool { return strings.EqualFold(s, ev.Message) }) {
		return false
	}
	if m.EventName != "" && !strings.EqualFold(m.EventName, ev.EventName) {
		return false
	}
	if len(m.AnyChanged) > 0 && !slices.ContainsFunc(ev.ChangedFields, func(f string) bool {
		return slices.ContainsFunc(m.AnyChanged, func(c string) bool { return strings.EqualFold(c, f) })
	}) {
		return false
	}
	return true
}

type stepHeader struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Timeout string `json:"timeout"`
}

// route is a compiled route.
type route struct {
	name  string
	match matchDecl
	steps []boundStep
}

// boundStep is one compiled step of a route. A step whose settings are not configured is kept,
// with skip saying why, so each run logs it as skipped rather than silently doing less.
type boundStep struct {
	name    string
	typ     string
	timeout time.Duration
	step    Step
	skip    string
}

// routeSet is the result of loading a routes file.
type routeSet struct {
	routes []route
	// written holds, lower-cased, every column a dataverse-update step writes: an Update event
	// that changed nothing else is the worker's own echo.
	written writtenColumns
	// skipped lists "route/step: why" for the start-up warning.
	skipped []string
}

// loadRoutes reads, validates (schema, then meaning) and compiles a routes file. Errors name
// the file, the route and the step, and the field.
func loadRoutes(path string, types map[string]StepType, env BuildEnv) (*routeSet, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return parseRoutes(path, raw, types, env)
}

func parseRoutes(path string, raw []byte, types map[string]StepType, env BuildEnv) (*routeSet, error) {
	if err := validateRoutesSchema(path, raw); err != nil {
		return nil, err
	}
	var file struct {
		Routes []routeDecl `json:"routes"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	set := &routeSet{written: make(writtenColumns)}
	var problems []string
	seenRoutes := make(map[string]bool)
	for _, rd := range file.Routes {
		r := route{name: rd.Name, match: rd.Match}
		if seenRoutes[rd.Name] {
			problems = append(problems, fmt.Sprintf("route %q: name: used by an earlier route", rd.Name))
		}
		seenRoutes[rd.Name] = true
		earlier := make(map[string]StepStatus)
		for i, rawStep := range rd.Steps {
			var h stepHeader
			if err := json.Unmarshal(rawStep, &h); err != nil {
				problems = append(problems, fmt.Sprintf("route %q step %d: %v", rd.Name, i+1, err))
				continue
			}
			where := fmt.Sprintf("route %q step %d (%q)", rd.Name, i+1, h.Name)
			if _, dup := earlier[h.Name]; dup {
				problems = append(problems, where+": name: used by an earlier step of this route")
				continue
			}
			bs := boundStep{name: h.Name, typ: h.Type, timeout: defaultStepTimeout}
			if h.Timeout != "" {
				d, err := time.ParseDuration(h.Timeout)
				if err != nil || d <= 0 || d > maxStepTimeout {
					problems = append(problems, fmt.Sprintf("%s: timeout: %q must be a duration between 1ms and %s (e.g. 10s)", where, h.Timeout, maxStepTimeout))
					continue
				}
				bs.timeout = d
			}
			newStep, ok := types[h.Type]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: type: unknown step type %q (known: %s)", where, h.Type, strings.Join(sortedKeys(types), ", ")))
				continue
			}
			decl := StepDecl{Route: rd.Name, Name: h.Name, Type: h.Type, Raw: rawStep, Earlier: earlier}
			step, err := newStep(decl, env)
			var skip *SkipError
			switch {
			case errors.As(err, &skip):
				bs.skip = skip.Reason
				set.skipped = append(set.skipped, fmt.Sprintf("%s: %s", where, skip.Reason))
				earlier[h.Name] = StepSkipped
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				earlier[h.Name] = StepSkipped
				continue
			default:
				bs.step = step
				earlier[h.Name] = StepReady
				if w, ok := step.(ColumnWriter); ok {
					set.written.add(writtenTable(step, rd.Match), w.WrittenColumns())
				}
			}
			r.steps = append(r.steps, bs)
		}
		set.routes = append(set.routes, r)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return set, nil
}

// writtenColumns are the columns the worker writes, by lower-cased table logical name; the
// table "" stands for any table, when the step's target is not known before an event names it.
type writtenColumns map[string]map[string]bool

func (w writtenColumns) add(table string, columns []string) {
	table = strings.ToLower(table)
	if w[table] == nil {
		w[table] = make(map[string]bool)
	}
	for _, c := range columns {
		w[table][strings.ToLower(c)] = true
	}
}

// has reports whether the worker writes column on table.
func (w writtenColumns) has(table, column string) bool {
	column = strings.ToLower(column)
	return w[""][column] || w[strings.ToLower(table)][column]
}

// writtenTable is the table a column-writing step writes to, when the routes file fixes it: a
// dataverse-update of the event's own record in a route that matches one entity. Any other
// writer (a lookup's record, a custom step) may write anywhere.
func writtenTable(step Step, m matchDecl) string {
	if u, ok := step.(*updateStep); ok && u.lookup == "" {
		return m.Entity
	}
	return ""
}

// validateRoutesSchema checks raw against the embedded schema and names each problem by route
// and step rather than by JSON path.
func validateRoutesSchema(path string, raw []byte) error {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: not JSON: %w", path, err)
	}
	res, err := gojsonschema.Validate(gojsonschema.NewStringLoader(routesSchema), gojsonschema.NewGoLoader(doc))
	if err != nil {
		return fmt.Errorf("%s: schema: %w", path, err)
	}
	if res.Valid() {
		return nil
	}
	var problems []string
	for _, e := range res.Errors() {
		switch e.Type() {
		case "condition_then", "condition_else", "number_all_of":
			// Wrappers around the specific errors, which are reported too.
			continue
		}
		problems = append(problems, describeField(doc, e.Field())+e.Description())
	}
	return fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
}

var fieldIndex = regexp.MustCompile(`^\d+$`)

// describeField turns a gojsonschema field path (routes.0.steps.1.url) into
// `route "credit-check" step 2 ("write-score"): url: `.
func describeField(doc any, field string) string {
	if field == "(root)" || field == "" {
		return ""
	}
	parts := strings.Split(field, ".")
	var where []string
	rest := ""
	cur := doc
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		if (p == "routes" || p == "steps") && i+1 < len(parts) && fieldIndex.MatchString(parts[i+1]) {
			n, _ := strconv.Atoi(parts[i+1])
			item := index(cur, p, n)
			name, _ := lookupKey(item, "name").(string)
			if p == "routes" {
				where = append(where, fmt.Sprintf("route %q", name))
			} else {
				where = append(where, fmt.Sprintf("step %d (%q)", n+1, name))
			}
			cur = item
			i++
			continue
		}
		rest = strings.Join(parts[i:], ".")
		break
	}
	var b strings.Builder
	if len(where) > 0 {
		b.WriteString(strings.Join(where, " ") + ": ")
	}
	if rest != "" {
		b.WriteString(rest + ": ")
	}
	return b.String()
}

func index(v any, key string, n int) any {
	list, _ := lookupKey(v, key).([]any)
	if n < len(list) {
		return list[n]
	}
	return nil
}

func lookupKey(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// settingRef matches ${NAME} and ${NAME:-default}.
var settingRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandSettings replaces ${NAME} references in s with settings read through lookup; ${NAME:-x}
// falls back to x. A reference with no value and no default yields a *SkipError naming it.
func expandSettings(s string, lookup func(string) (string, bool)) (string, error) {
	var missing []string
	out := settingRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := settingRef.FindStringSubmatch(ref)
		if v, ok := lookup(m[1]); ok && v != "" {
			return v
		}
		if strings.Contains(ref, ":-") {
			return m[2]
		}
		missing = append(missing, m[1])
		return ""
	})
	if len(missing) > 0 {
		return "", &SkipError{Reason: fmt.Sprintf("setting %s is not set", strings.Join(missing, ", "))}
	}
	return out, nil
}
