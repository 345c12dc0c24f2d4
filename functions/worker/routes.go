package worker

import (
	"bytes"
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
	"github.com/dvrelay/dvrelay/internal/platform/suggest"
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
	Entity         string   `json:"entity"`
	Messages       []string `json:"messages"`
	EventName      string   `json:"eventName"`
	OrganizationID string   `json:"organizationId"`
	Stages         []int    `json:"stages"`
	Modes          []int    `json:"modes"`
	// Parameters must each be in the event's Parameters with a value other than null.
	Parameters []string `json:"parameters"`
	AnyChanged []string `json:"anyChanged"`
}

// matches reports whether every condition given holds for ev.
func (m matchDecl) matches(ev *event.Event) bool { return m.mismatch(ev) == "" }

// mismatch says which condition of the match does not hold for ev, or "" when all hold. Names
// compare case-insensitively: Dataverse logical names are lower case, but message and event
// names are not always written the same way by hand.
func (m matchDecl) mismatch(ev *event.Event) string {
	if m.Entity != "" && !strings.EqualFold(m.Entity, ev.Entity) {
		return fmt.Sprintf("the entity is %q, the route wants %q", ev.Entity, m.Entity)
	}
	if len(m.Messages) > 0 && !slices.ContainsFunc(m.Messages, func(s string) bool { return strings.EqualFold(s, ev.Message) }) {
		return fmt.Sprintf("the message is %q, the route wants %s", ev.Message, strings.Join(m.Messages, " or "))
	}
	if m.EventName != "" && !strings.EqualFold(m.EventName, ev.EventName) {
		return fmt.Sprintf("the event name is %q, the route wants %q", ev.EventName, m.EventName)
	}
	if m.OrganizationID != "" && !strings.EqualFold(m.OrganizationID, ev.OrganizationID) {
		if ev.OrganizationID == "" {
			return fmt.Sprintf("the event names no organization (%s), the route wants %s", sourceWords(ev), m.OrganizationID)
		}
		return fmt.Sprintf("the organization is %s, the route wants %s", ev.OrganizationID, m.OrganizationID)
	}
	if len(m.Stages) > 0 && !slices.Contains(m.Stages, ev.Stage) {
		wanted := make([]string, len(m.Stages))
		for i, s := range m.Stages {
			wanted[i] = fmt.Sprintf("%d (%s)", s, event.StageName(s))
		}
		if ev.Stage == 0 {
			return fmt.Sprintf("the event does not say its stage (%s), the route wants %s", sourceWords(ev), strings.Join(wanted, " or "))
		}
		return fmt.Sprintf("the stage is %d (%s), the route wants %s", ev.Stage, event.StageName(ev.Stage), strings.Join(wanted, " or "))
	}
	if len(m.Modes) > 0 && (ev.Mode == nil || !slices.Contains(m.Modes, *ev.Mode)) {
		wanted := make([]string, len(m.Modes))
		for i, mode := range m.Modes {
			wanted[i] = fmt.Sprintf("%d (%s)", mode, event.ModeName(mode))
		}
		if ev.Mode == nil {
			return fmt.Sprintf("the event does not say its mode (%s), the route wants %s", sourceWords(ev), strings.Join(wanted, " or "))
		}
		return fmt.Sprintf("the mode is %d (%s), the route wants %s", *ev.Mode, event.ModeName(*ev.Mode), strings.Join(wanted, " or "))
	}
	for _, name := range m.Parameters {
		if !hasParameter(ev, name) {
			have := "it has none"
			if names := sortedKeys(ev.Parameters); len(names) > 0 {
				have = "it has " + strings.Join(names, ", ")
			}
			if ev.Trimmed {
				have = "the payload was trimmed by Dataverse and carries no parameters"
			}
			return fmt.Sprintf("parameter %s is not in the event (%s)", name, have)
		}
	}
	if len(m.AnyChanged) > 0 && !slices.ContainsFunc(ev.ChangedFields, func(f string) bool {
		return slices.ContainsFunc(m.AnyChanged, func(c string) bool { return strings.EqualFold(c, f) })
	}) {
		changed := "no column changed"
		switch {
		case ev.Trimmed:
			changed = "the payload was trimmed by Dataverse and names no changed columns"
		case len(ev.ChangedFields) > 0:
			changed = "changed: " + strings.Join(ev.ChangedFields, ", ")
		}
		return fmt.Sprintf("none of %s changed (%s)", strings.Join(m.AnyChanged, ", "), changed)
	}
	return ""
}

// hasParameter reports whether the event carries the parameter name (compared without regard to
// case) with a value other than null.
func hasParameter(ev *event.Event, name string) bool {
	for key, v := range ev.Parameters {
		if strings.EqualFold(key, name) && strings.TrimSpace(string(v)) != "null" {
			return true
		}
	}
	return false
}

// sourceWords says where an event without webhook context came from, for a mismatch.
func sourceWords(ev *event.Event) string {
	switch ev.Source {
	case event.SourcePlugin:
		return "a plugin event"
	case event.SourceRecover:
		return "a recovered event"
	}
	return "the payload did not say"
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
	decl    json.RawMessage // the step as declared, for Explain to show a skipped step's target
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
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, &RoutesError{Path: path, Problems: []RouteProblem{syntaxProblem(raw, err)}}
	}
	problems := &problemList{raw: raw, pos: indexPositions(raw)}
	badSteps, err := schemaProblems(doc, problems)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	set := compileRoutes(raw, types, env, problems, badSteps)
	if err := problems.err(path); err != nil {
		return nil, err
	}
	return set, nil
}

// compileRoutes checks what the schema cannot (unique names, known step types, timeouts in
// range, each step type's own rules) and builds the routes. Steps the schema already found
// wrong are left out, so each problem is reported once; everything else is still checked, so
// that one start reports every problem of the file.
func compileRoutes(raw []byte, types map[string]StepType, env BuildEnv, problems *problemList, badSteps map[string]bool) *routeSet {
	var file struct {
		Routes []json.RawMessage `json:"routes"`
	}
	// Not a list of routes: the schema has said so.
	_ = json.Unmarshal(raw, &file)
	set := &routeSet{written: make(writtenColumns)}
	seenRoutes := make(map[string]bool)
	for ri, rawRoute := range file.Routes {
		routePath := jsonPath{"routes", strconv.Itoa(ri)}
		var parts struct {
			Name  json.RawMessage   `json:"name"`
			Match json.RawMessage   `json:"match"`
			Steps []json.RawMessage `json:"steps"`
		}
		if json.Unmarshal(rawRoute, &parts) != nil {
			continue
		}
		var rd routeDecl
		_ = json.Unmarshal(parts.Name, &rd.Name)
		if len(parts.Match) > 0 {
			_ = json.Unmarshal(parts.Match, &rd.Match)
		}
		r := route{name: rd.Name, match: rd.Match}
		if seenRoutes[rd.Name] {
			problems.add(routePath.with("name"), false, fmt.Sprintf("route %q: name: used by an earlier route", rd.Name))
		}
		seenRoutes[rd.Name] = true
		earlier := make(map[string]StepStatus)
		for i, rawStep := range parts.Steps {
			stepPath := routePath.with("steps", strconv.Itoa(i))
			var h stepHeader
			if err := json.Unmarshal(rawStep, &h); err != nil || badSteps[stepPath.key()] {
				// The schema has placed this step's problems; later references to it skip.
				if h.Name != "" {
					earlier[h.Name] = StepSkipped
				}
				continue
			}
			where := fmt.Sprintf("route %q step %d (%q)", rd.Name, i+1, h.Name)
			if _, dup := earlier[h.Name]; dup {
				problems.add(stepPath.with("name"), false, where+": name: used by an earlier step of this route")
				continue
			}
			bs := boundStep{name: h.Name, typ: h.Type, timeout: defaultStepTimeout, decl: rawStep}
			if h.Timeout != "" {
				d, problem := stepTimeout(h.Timeout)
				if problem != "" {
					problems.add(stepPath.with("timeout"), false, where+": "+problem)
					earlier[h.Name] = StepSkipped
					continue
				}
				bs.timeout = d
			}
			newStep, ok := types[h.Type]
			if !ok {
				problems.add(stepPath.with("type"), false, fmt.Sprintf("%s: type: unknown step type %q (known: %s)", where, h.Type, strings.Join(sortedKeys(types), ", ")))
				earlier[h.Name] = StepSkipped
				continue
			}
			decl := StepDecl{Route: rd.Name, Name: h.Name, Type: h.Type, Raw: rawStep, Earlier: earlier}
			step, err := newStep(decl, env)
			var skip *SkipError
			var ferr *FieldError
			switch {
			case errors.As(err, &skip) && misspelt(skip, env.SetNames) != nil:
				for _, m := range misspelt(skip, env.SetNames) {
					problems.addAt(stepOffset(raw, problems, stepPath, "${"+m[0]), fmt.Sprintf(
						"%s: ${%s} is not set, but %s is: a misspelt setting would turn this step off; write ${%s} (or set %s)",
						where, m[0], m[1], m[1], m[0]))
				}
				earlier[h.Name] = StepSkipped
				continue
			case errors.As(err, &skip):
				bs.skip = skip.Reason
				set.skipped = append(set.skipped, fmt.Sprintf("%s: %s", where, skip.Reason))
				earlier[h.Name] = StepSkipped
			case errors.As(err, &ferr):
				problems.add(stepPath.with(ferr.Path...), ferr.AtKey, fmt.Sprintf("%s: %v", where, err))
				earlier[h.Name] = StepSkipped
				continue
			case err != nil:
				problems.add(stepPath, false, fmt.Sprintf("%s: %v", where, err))
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
	return set
}

// misspelt pairs each unset setting of skip that resembles a set one with that one.
func misspelt(skip *SkipError, setNames []string) [][2]string {
	var out [][2]string
	for _, name := range skip.Unset {
		if near, ok := misspeltSetting(name, setNames); ok {
			out = append(out, [2]string{name, near})
		}
	}
	return out
}

// stepOffset is the offset of needle inside the step at stepPath, or of the step itself.
func stepOffset(raw []byte, problems *problemList, stepPath jsonPath, needle string) int {
	start := problems.pos.at(stepPath, false)
	if i := bytes.Index(raw[start:], []byte(needle)); i >= 0 {
		return start + i
	}
	return start
}

// stepTimeout reads a step's timeout; the schema has checked its form.
func stepTimeout(v string) (time.Duration, string) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Sprintf("timeout %q is not a duration (e.g. 10s)", v)
	case d <= 0:
		return 0, fmt.Sprintf("timeout %q must be longer than zero", v)
	case d > maxStepTimeout:
		return 0, fmt.Sprintf("timeout %q is longer than %s, the most one try may take", v, maxStepTimeout)
	}
	return d, ""
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
		return "", &SkipError{Reason: fmt.Sprintf("setting %s is not set", strings.Join(missing, ", ")), Unset: missing}
	}
	return out, nil
}

// misspeltSetting returns the set setting an unset name was probably meant to be: the same
// name but for case, or one edit away (two for long names), a letter dropped, added, changed
// or two swapped. A reference to an optional setting that is simply not set stays a skip;
// only one this close to a set name is taken for a typo, since the step would be off without
// anyone noticing.
func misspeltSetting(name string, setNames []string) (string, bool) {
	near, d := suggest.Nearest(name, setNames)
	if d < 0 || near == name {
		return "", false
	}
	allowed := 1
	if len(name) >= 20 {
		allowed = 2
	}
	return near, d <= allowed
}
