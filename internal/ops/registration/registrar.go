package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/platform/suggest"
)

// WebAPI is what a registration needs from the Dataverse Web API; *dataverse.Client has it.
type WebAPI interface {
	Get(ctx context.Context, path string, query url.Values, out any) error
	GetRecord(ctx context.Context, entitySet, id string, query url.Values, out any) error
	Create(ctx context.Context, entitySet string, body any) (string, error)
	UpdateRecord(ctx context.Context, entitySet, id string, body any) error
	Delete(ctx context.Context, entitySet, id string) error
}

// Entity sets a registration touches.
const (
	setMessages  = "sdkmessages"
	setFilters   = "sdkmessagefilters"
	setEndpoints = "serviceendpoints"
	setSteps     = "sdkmessageprocessingsteps"
	setImages    = "sdkmessageprocessingstepimages"
	setSolutions = "solutions"
)

// Fixed step and endpoint settings: dvrelay's intake answers fast and queues the work, so the
// step runs after the save (stage 40) and off the user's request (mode 1, asynchronous), which
// also leaves a System Job behind for every failed post.
const (
	contractWebhook     = 8
	messageFormatJSON   = 2
	userClaimNone       = 1
	stagePostOperation  = 40
	modeAsynchronous    = 1
	deploymentServer    = 0
	stepDescription     = "dvrelay intake; managed by handler register"
	endpointDescription = "dvrelay intake; managed by handler register"
)

// Action is what happened, or in a dry run would happen, to one record.
type Action string

const (
	Create    Action = "create"
	Update    Action = "update"
	Delete    Action = "delete"
	Unchanged Action = "unchanged"
)

// Change reports one record. Fields are the columns sent (all of them for a create, the
// changed ones for an update), with secrets replaced by Redacted.
type Change struct {
	Action    Action
	EntitySet string
	Name      string
	ID        string // empty for a record a dry run would create
	Fields    map[string]any
	Done      bool   // false in a dry run
	Note      string // why an unchanged record was left as it is, when that is not obvious
}

func (c Change) String() string {
	verb := map[Action]string{Create: "created", Update: "updated", Delete: "deleted", Unchanged: "unchanged"}[c.Action]
	if !c.Done && c.Action != Unchanged {
		verb = "would " + string(c.Action)
	}
	s := fmt.Sprintf("%s %s %q", verb, c.EntitySet, c.Name)
	if c.ID != "" {
		s += " (" + c.ID + ")"
	}
	if len(c.Fields) > 0 {
		var b strings.Builder
		enc := json.NewEncoder(&b) // map keys come out sorted
		enc.SetEscapeHTML(false)   // <redacted> and <settings> read as written
		_ = enc.Encode(c.Fields)
		s += ": " + strings.TrimSpace(b.String())
	}
	if c.Note != "" {
		s += " (" + c.Note + ")"
	}
	return s
}

// Options tune a Registrar. The zero value is fine.
type Options struct {
	// MaxAttempts bounds tries per request under throttling (429) and gateway errors; 0 means 5.
	MaxAttempts int
	// MaxWait is the longest Retry-After honoured; a longer one ends the run. 0 means 5 minutes.
	MaxWait time.Duration
	// Sleep waits between tries; nil means a timer. Tests pass one that records the wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnWait, when set, hears about each wait before it starts (to tell the person why).
	OnWait func(d time.Duration, cause error)
}

// Registrar registers, lists and removes webhook registrations in one environment.
type Registrar struct {
	api WebAPI
}

// New returns a Registrar over api; every request is retried under throttling as the
// Web API asks (Retry-After).
func New(api WebAPI, opts Options) *Registrar {
	return &Registrar{api: newRetrying(api, opts)}
}

// Register creates or updates the endpoint, the step and its images so that they match spec.
// It looks everything up before writing anything; with dryRun it writes nothing. The changes
// come back in order (endpoint, step, images), also when an error stops the run part way:
// running again picks up where it stopped.
func (r *Registrar) Register(ctx context.Context, spec Spec, dryRun bool) ([]Change, error) {
	spec.Attributes = normalizeColumns(spec.Attributes)
	images := make([]Image, len(spec.Images))
	for i, img := range spec.Images {
		images[i] = Image{Type: img.Type, Attributes: normalizeColumns(img.Attributes)}
	}
	spec.Images = images
	if err := spec.Check(); err != nil {
		return nil, err
	}
	changes, err := r.register(ctx, &spec, dryRun)
	return changes, redactError(err, spec.secrets())
}

// register does the work of Register; it may learn the function key from an existing
// endpoint's url, so spec is a pointer and the caller redacts what it learned.
func (r *Registrar) register(ctx context.Context, spec *Spec, dryRun bool) ([]Change, error) {
	// Look up everything first: a missing message or table fails before any write.
	msgID, err := r.messageID(ctx, spec.Message)
	if err != nil {
		return nil, err
	}
	filterID, err := r.filterID(ctx, spec.Entity, spec.Message, msgID)
	if err != nil {
		return nil, err
	}
	if err := r.checkColumns(ctx, *spec); err != nil {
		return nil, err
	}
	if spec.Solution != "" {
		if err := r.checkSolution(ctx, spec.Solution); err != nil {
			return nil, err
		}
		ctx = dataverse.WithSolution(ctx, spec.Solution)
	}
	endpoint, err := r.endpointByName(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	var step record
	if endpoint != nil {
		steps, err := r.records(ctx, setSteps, stepColumns, eq("_eventhandler_value", endpoint.id(setEndpoints)),
			eq("_sdkmessageid_value", msgID), eq("_sdkmessagefilterid_value", filterID))
		if err != nil {
			return nil, fmt.Errorf("look up the step: %w", err)
		}
		if len(steps) > 1 {
			return nil, fmt.Errorf("%d steps send %s of %s to endpoint %q; remove the extra ones in the Plugin Registration Tool (handler registrations lists them)", len(steps), spec.Message, spec.Entity, spec.Name)
		}
		if len(steps) == 1 {
			step = steps[0]
		}
	}
	if step == nil {
		// A step with this name but another key belongs to something else: changing its
		// message or table in place is not what the person asked for.
		named, err := r.records(ctx, setSteps, stepColumns, eq("name", spec.StepName()))
		if err != nil {
			return nil, fmt.Errorf("look up the step: %w", err)
		}
		if len(named) > 0 {
			return nil, fmt.Errorf("a step named %q (%s) exists but does not send %s of %s to endpoint %q; remove it or choose another --name", spec.StepName(), named[0].id(setSteps), spec.Message, spec.Entity, spec.Name)
		}
	}
	var images []record
	if step != nil {
		images, err = r.records(ctx, setImages, imageColumns, eq("_sdkmessageprocessingstepid_value", step.id(setSteps)))
		if err != nil {
			return nil, fmt.Errorf("look up the step's images: %w", err)
		}
	}

	// An endpoint registered before the key moved out of the url still has ?code=<key> in
	// its readable url column. The key moves into authvalue; a run that does not give the
	// key itself carries the one the url has.
	var keyInURL bool
	if endpoint != nil {
		if old := codeOf(str(endpoint["url"])); old != "" {
			keyInURL = true
			if spec.functionKey() == "" {
				spec.FunctionKey = old
			}
		}
	}

	var changes []Change
	secrets := spec.secrets()

	// The endpoint.
	epFields := map[string]any{
		"name":          spec.Name,
		"contract":      contractWebhook,
		"url":           spec.endpointURL(),
		"authtype":      spec.authType(),
		"messageformat": messageFormatJSON,
		"userclaim":     userClaimNone,
		"description":   endpointDescription,
	}
	epChange := Change{EntitySet: setEndpoints, Name: spec.Name}
	if endpoint == nil {
		epFields["authvalue"] = spec.authValue()
		epChange.Action, epChange.Fields = Create, epFields
	} else {
		epChange.ID = endpoint.id(setEndpoints)
		diff := changed(epFields, endpoint)
		authSet, known := endpoint["isauthvalueset"].(bool)
		if spec.RotateSecret || keyInURL || diff["authtype"] != nil || (known && !authSet) {
			diff["authvalue"] = spec.authValue()
		}
		epChange.Action, epChange.Fields = Update, diff
		if len(diff) == 0 {
			epChange.Action = Unchanged
		}
	}
	endpointID, err := r.apply(ctx, &epChange, dryRun)
	changes = append(changes, report(epChange, secrets))
	if err != nil {
		return changes, err
	}

	// The step.
	stepFields := map[string]any{
		"name":                spec.StepName(),
		"description":         stepDescription,
		"stage":               stagePostOperation,
		"mode":                modeAsynchronous,
		"rank":                spec.Rank,
		"supporteddeployment": deploymentServer,
		// Successful System Jobs are removed; failed ones stay for finding lost events.
		"asyncautodelete":     true,
		"filteringattributes": nil,
	}
	if len(spec.Attributes) > 0 {
		stepFields["filteringattributes"] = strings.Join(spec.Attributes, ",")
	}
	stepChange := Change{EntitySet: setSteps, Name: spec.StepName()}
	if step == nil {
		stepFields["eventhandler_serviceendpoint@odata.bind"] = bind(setEndpoints, endpointID)
		stepFields["sdkmessageid@odata.bind"] = bind(setMessages, msgID)
		stepFields["sdkmessagefilterid@odata.bind"] = bind(setFilters, filterID)
		if stepFields["filteringattributes"] == nil {
			delete(stepFields, "filteringattributes")
		}
		stepChange.Action, stepChange.Fields = Create, stepFields
	} else {
		stepChange.ID = step.id(setSteps)
		if len(spec.Attributes) == 0 && !spec.Prune {
			delete(stepFields, "filteringattributes") // not mentioned: kept as they are
		}
		diff := changed(stepFields, step)
		if state, _ := step["statecode"].(float64); state != 0 {
			// Someone disabled the step; registering means it should run.
			diff["statecode"], diff["statuscode"] = 0, 1
		}
		stepChange.Action, stepChange.Fields = Update, diff
		if len(diff) == 0 {
			stepChange.Action = Unchanged
		}
	}
	stepID, err := r.apply(ctx, &stepChange, dryRun)
	changes = append(changes, report(stepChange, secrets))
	if err != nil {
		return changes, err
	}

	// The images dvrelay manages, PreImage and PostImage; images under other aliases are
	// someone else's and are left alone.
	wanted := map[string]Image{}
	for _, img := range spec.Images {
		wanted[img.Type.Alias()] = img
	}
	existing := map[string]record{}
	for _, img := range images {
		alias, _ := img["entityalias"].(string)
		existing[alias] = img
	}
	for _, kind := range []ImageType{PreImage, PostImage} {
		alias := kind.Alias()
		want, isWanted := wanted[alias]
		have, exists := existing[alias]
		ch := Change{EntitySet: setImages, Name: alias}
		switch {
		case !isWanted && !exists:
			continue
		case !isWanted && !spec.Prune:
			ch.Action, ch.ID = Unchanged, have.id(setImages)
			ch.Note = "kept: this run gives no --image " + kind.String() + "; --prune removes it"
		case !isWanted:
			ch.Action, ch.ID = Delete, have.id(setImages)
		default:
			fields := map[string]any{
				"name":                alias,
				"entityalias":         alias,
				"imagetype":           int(want.Type),
				"messagepropertyname": messageProperty(spec.Message),
				"attributes":          nil,
			}
			if len(want.Attributes) > 0 {
				fields["attributes"] = strings.Join(want.Attributes, ",")
			}
			if !exists {
				fields["sdkmessageprocessingstepid@odata.bind"] = bind(setSteps, stepID)
				if fields["attributes"] == nil {
					delete(fields, "attributes") // Dataverse rejects an empty list; absent means all
				}
				ch.Action, ch.Fields = Create, fields
			} else {
				ch.ID = have.id(setImages)
				ch.Fields = changed(fields, have)
				ch.Action = Update
				if len(ch.Fields) == 0 {
					ch.Action = Unchanged
				}
			}
		}
		_, err := r.apply(ctx, &ch, dryRun)
		changes = append(changes, report(ch, secrets))
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// messageProperty is the message parameter an image is taken from (see imageRules).
func messageProperty(message string) string {
	rule, _ := imageMessage(message) // Check refused images on other messages
	return rule.property
}

// apply writes one change unless dryRun, and returns the record's id (empty for a record a
// dry run would create).
func (r *Registrar) apply(ctx context.Context, ch *Change, dryRun bool) (string, error) {
	if dryRun || ch.Action == Unchanged {
		return ch.ID, nil
	}
	var err error
	switch ch.Action {
	case Create:
		ch.ID, err = r.api.Create(ctx, ch.EntitySet, ch.Fields)
	case Update:
		err = r.api.UpdateRecord(ctx, ch.EntitySet, ch.ID, ch.Fields)
	case Delete:
		err = r.api.Delete(ctx, ch.EntitySet, ch.ID)
		var se statusError
		if errors.As(err, &se) && se.HTTPStatus() == http.StatusNotFound {
			// Gone already (deleting an endpoint cascades to its steps): the goal is met.
			err = nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s %s %q: %w", ch.Action, ch.EntitySet, ch.Name, err)
	}
	ch.Done = true
	return ch.ID, nil
}

// report is the change as shown: secrets out of every field.
func report(ch Change, secrets []string) Change {
	if ch.Fields == nil {
		return ch
	}
	fields := make(map[string]any, len(ch.Fields))
	for k, v := range ch.Fields {
		switch k {
		case "authvalue":
			v = Redacted
		case "url":
			v = RedactURL(fmt.Sprint(v))
		}
		if s, ok := v.(string); ok {
			v = redact(s, secrets)
		}
		fields[k] = v
	}
	ch.Fields = fields
	return ch
}

func redact(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

// redactedError keeps the chain (errors.As still finds a *dataverse.Error) while its text
// leaves secrets out.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string { return redact(e.err.Error(), e.secrets) }
func (e *redactedError) Unwrap() error { return e.err }

func redactError(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	return &redactedError{err: err, secrets: secrets}
}

func bind(set, id string) string {
	if id == "" {
		id = "<new>" // a dry run's record to be created
	}
	return "/" + set + "(" + id + ")"
}

// record is a row as the Web API returned it.
type record map[string]any

// primaryKeys name each set's id column.
var primaryKeys = map[string]string{
	setMessages:  "sdkmessageid",
	setFilters:   "sdkmessagefilterid",
	setEndpoints: "serviceendpointid",
	setSteps:     "sdkmessageprocessingstepid",
	setImages:    "sdkmessageprocessingstepimageid",
}

func (r record) id(set string) string {
	s, _ := r[primaryKeys[set]].(string)
	return s
}

var (
	endpointColumns = []string{"name", "url", "contract", "authtype", "messageformat", "userclaim", "description", "isauthvalueset"}
	stepColumns     = []string{"name", "description", "stage", "mode", "rank", "supporteddeployment", "asyncautodelete",
		"filteringattributes", "statecode", "_eventhandler_value", "_sdkmessageid_value", "_sdkmessagefilterid_value"}
	imageColumns = []string{"name", "entityalias", "imagetype", "messagepropertyname", "attributes", "_sdkmessageprocessingstepid_value"}
)

// filter is one "<column> eq <literal>" clause.
type filter string

func eq(column, value string) filter {
	if isGUID(value) {
		return filter(column + " eq " + value)
	}
	return filter(column + " eq '" + strings.ReplaceAll(value, "'", "''") + "'")
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", c):
			return false
		}
	}
	return true
}

func (r *Registrar) records(ctx context.Context, set string, columns []string, filters ...filter) ([]record, error) {
	parts := make([]string, len(filters))
	for i, f := range filters {
		parts[i] = string(f)
	}
	q := url.Values{"$select": {strings.Join(columns, ",")}}
	if len(parts) > 0 {
		q.Set("$filter", strings.Join(parts, " and "))
	}
	var out []record
	if err := r.api.Get(ctx, set, q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *Registrar) messageID(ctx context.Context, message string) (string, error) {
	found, err := r.records(ctx, setMessages, []string{"name"}, eq("name", message))
	if err != nil {
		return "", fmt.Errorf("look up message %s: %w", message, err)
	}
	// Names compare without regard to case in Dataverse; the registration wants the exact one.
	for _, m := range found {
		if m["name"] == message {
			return m.id(setMessages), nil
		}
	}
	if len(found) > 0 {
		return "", &SpecError{Problems: []string{fmt.Sprintf("--message %s: Dataverse spells it %q", message, found[0]["name"])}}
	}
	return "", &SpecError{Problems: []string{fmt.Sprintf("--message %s: Dataverse has no such message (e.g. Create, Update, Delete)", message)}}
}

func (r *Registrar) filterID(ctx context.Context, entity, message, msgID string) (string, error) {
	found, err := r.records(ctx, setFilters, []string{"primaryobjecttypecode"}, eq("primaryobjecttypecode", entity), eq("_sdkmessageid_value", msgID))
	if err != nil {
		return "", fmt.Errorf("look up %s of %s: %w", message, entity, err)
	}
	if len(found) == 0 {
		return "", &SpecError{Problems: []string{fmt.Sprintf("--entity %s: Dataverse has no %s message for a table of that logical name; check the name (the table's Properties show its logical name)", entity, message)}}
	}
	return found[0].id(setFilters), nil
}

// checkColumns refuses column names the table's metadata does not list, naming the closest
// one: Dataverse would take a mistyped filtering attribute and the step would never fire.
func (r *Registrar) checkColumns(ctx context.Context, spec Spec) error {
	type use struct{ flag, column string }
	var uses []use
	for _, a := range spec.Attributes {
		uses = append(uses, use{"--attributes", a})
	}
	for _, img := range spec.Images {
		for _, a := range img.Attributes {
			uses = append(uses, use{"--image " + img.Type.String(), a})
		}
	}
	if len(uses) == 0 {
		return nil
	}
	var attrs []struct {
		LogicalName string `json:"LogicalName"`
	}
	path := "EntityDefinitions(LogicalName='" + spec.Entity + "')/Attributes"
	if err := r.api.Get(ctx, path, url.Values{"$select": {"LogicalName"}}, &attrs); err != nil {
		return fmt.Errorf("read the columns of %s: %w", spec.Entity, err)
	}
	known := make(map[string]bool, len(attrs))
	names := make([]string, 0, len(attrs))
	for _, a := range attrs {
		known[a.LogicalName] = true
		names = append(names, a.LogicalName)
	}
	var p []string
	for _, u := range uses {
		if known[u.column] {
			continue
		}
		line := fmt.Sprintf("%s: %s has no column %q", u.flag, spec.Entity, u.column)
		if near, d := suggest.Nearest(u.column, names); d >= 0 && d <= max(2, len(u.column)/3) {
			line += fmt.Sprintf("; did you mean %q?", near)
		}
		p = append(p, line)
	}
	if len(p) > 0 {
		return &SpecError{Problems: p}
	}
	return nil
}

// checkSolution refuses a solution that does not exist or is managed before anything is
// written: Dataverse adds new components to unmanaged solutions only.
func (r *Registrar) checkSolution(ctx context.Context, name string) error {
	found, err := r.records(ctx, setSolutions, []string{"uniquename", "ismanaged"}, eq("uniquename", name))
	if err != nil {
		return fmt.Errorf("look up solution %s: %w", name, err)
	}
	if len(found) == 0 {
		return &SpecError{Problems: []string{fmt.Sprintf("--solution %s: no solution has this unique name (the solution's Properties show it)", name)}}
	}
	if managed, _ := found[0]["ismanaged"].(bool); managed {
		return &SpecError{Problems: []string{fmt.Sprintf("--solution %s: a managed solution takes no new components; give the unmanaged solution you export it from", name)}}
	}
	return nil
}

func (r *Registrar) endpointByName(ctx context.Context, name string) (record, error) {
	found, err := r.records(ctx, setEndpoints, endpointColumns, filter("contract eq 8"), eq("name", name))
	if err != nil {
		return nil, fmt.Errorf("look up endpoint %q: %w", name, err)
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%d webhook endpoints are named %q; delete the extra ones in the Plugin Registration Tool", len(found), name)
}

// changed returns the desired fields whose value differs from the record's. Column lists
// compare as sets; an empty list and null both mean "all columns".
func changed(desired map[string]any, have record) map[string]any {
	out := map[string]any{}
	for k, want := range desired {
		if strings.Contains(k, "@") {
			continue
		}
		got := have[k]
		if k == "filteringattributes" || k == "attributes" {
			if columnSet(want) != columnSet(got) {
				out[k] = want
			}
			continue
		}
		if !sameJSON(want, got) {
			out[k] = want
		}
	}
	return out
}

func columnSet(v any) string {
	s, _ := v.(string)
	return strings.Join(normalizeColumns(SplitColumns(s)), ",")
}

func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Unregister removes the endpoint named name with every step that posts to it and their
// images, children first. A name that is not registered is no error: nothing comes back.
func (r *Registrar) Unregister(ctx context.Context, name string, dryRun bool) ([]Change, error) {
	if strings.TrimSpace(name) == "" {
		return nil, &SpecError{Problems: []string{"--name: must not be empty"}}
	}
	endpoint, err := r.endpointByName(ctx, name)
	if err != nil || endpoint == nil {
		return nil, err
	}
	epID := endpoint.id(setEndpoints)
	steps, err := r.records(ctx, setSteps, stepColumns, eq("_eventhandler_value", epID))
	if err != nil {
		return nil, fmt.Errorf("look up the steps of endpoint %q: %w", name, err)
	}
	var plan []Change
	for _, s := range steps {
		images, err := r.records(ctx, setImages, imageColumns, eq("_sdkmessageprocessingstepid_value", s.id(setSteps)))
		if err != nil {
			return nil, fmt.Errorf("look up the images of step %s: %w", s.id(setSteps), err)
		}
		for _, img := range images {
			plan = append(plan, Change{Action: Delete, EntitySet: setImages, Name: str(img["name"]), ID: img.id(setImages)})
		}
		plan = append(plan, Change{Action: Delete, EntitySet: setSteps, Name: str(s["name"]), ID: s.id(setSteps)})
	}
	plan = append(plan, Change{Action: Delete, EntitySet: setEndpoints, Name: name, ID: epID})
	var done []Change
	for _, ch := range plan {
		_, err := r.apply(ctx, &ch, dryRun)
		done = append(done, ch)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Registration is one step that posts to an intake, with its endpoint and images.
type Registration struct {
	Endpoint            string // serviceendpoint name
	EndpointID          string
	URL                 string // function key redacted
	Auth                string // header, webhookkey or the authtype number
	Step                string // empty for an endpoint without steps
	StepID              string
	Message             string
	Entity              string
	Stage               int
	Mode                int // 0 synchronous, 1 asynchronous
	FilteringAttributes string
	Enabled             bool
	Images              []string // e.g. "PreImage (pre: name,estimatedvalue)"
}

// List returns the steps whose endpoint posts to functionURL. URLs compare without their
// query (the function key) and without regard to the host's case or a trailing slash.
func (r *Registrar) List(ctx context.Context, functionURL string) ([]Registration, error) {
	want, err := sameIntake(functionURL)
	if err != nil {
		return nil, &SpecError{Problems: []string{fmt.Sprintf("--function-url %q: %v", RedactURL(functionURL), err)}}
	}
	endpoints, err := r.records(ctx, setEndpoints, endpointColumns, filter("contract eq 8"))
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	names := map[string]string{} // id → name, for messages and filters
	lookupName := func(set, id, column string) (string, error) {
		if id == "" {
			return "", nil
		}
		if n, ok := names[id]; ok {
			return n, nil
		}
		var rec record
		if err := r.api.GetRecord(ctx, set, id, url.Values{"$select": {column}}, &rec); err != nil {
			return "", fmt.Errorf("read %s(%s): %w", set, id, err)
		}
		names[id] = str(rec[column])
		return names[id], nil
	}
	var out []Registration
	for _, ep := range endpoints {
		if key, err := sameIntake(str(ep["url"])); err != nil || key != want {
			continue
		}
		base := Registration{
			Endpoint: str(ep["name"]), EndpointID: ep.id(setEndpoints), URL: RedactURL(str(ep["url"])),
			Auth: authName(ep["authtype"]),
		}
		steps, err := r.records(ctx, setSteps, stepColumns, eq("_eventhandler_value", base.EndpointID))
		if err != nil {
			return nil, fmt.Errorf("list the steps of endpoint %q: %w", base.Endpoint, err)
		}
		if len(steps) == 0 {
			out = append(out, base)
			continue
		}
		for _, s := range steps {
			reg := base
			reg.Step, reg.StepID = str(s["name"]), s.id(setSteps)
			reg.Stage, reg.Mode = num(s["stage"]), num(s["mode"])
			reg.FilteringAttributes = str(s["filteringattributes"])
			reg.Enabled = num(s["statecode"]) == 0
			if reg.Message, err = lookupName(setMessages, str(s["_sdkmessageid_value"]), "name"); err != nil {
				return nil, err
			}
			if reg.Entity, err = lookupName(setFilters, str(s["_sdkmessagefilterid_value"]), "primaryobjecttypecode"); err != nil {
				return nil, err
			}
			images, err := r.records(ctx, setImages, imageColumns, eq("_sdkmessageprocessingstepid_value", reg.StepID))
			if err != nil {
				return nil, fmt.Errorf("list the images of step %q: %w", reg.Step, err)
			}
			for _, img := range images {
				kind := map[int]string{0: "pre", 1: "post", 2: "pre and post"}[num(img["imagetype"])]
				cols := str(img["attributes"])
				if cols == "" {
					cols = "all columns"
				}
				reg.Images = append(reg.Images, fmt.Sprintf("%s (%s: %s)", str(img["entityalias"]), kind, cols))
			}
			sort.Strings(reg.Images)
			out = append(out, reg)
		}
	}
	return out, nil
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func authName(v any) string {
	switch num(v) {
	case authTypeWebhookKey:
		return string(AuthWebhookKey)
	case authTypeHTTPHeader:
		return string(AuthHeader)
	}
	return fmt.Sprintf("authtype %v", v)
}

// sameIntake is the part of an intake URL that identifies it: scheme, host and path.
func sameIntake(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", errors.New("not an absolute URL")
	}
	host := strings.ToLower(u.Hostname())
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443") && !(u.Scheme == "http" && p == "80") {
		host += ":" + p
	}
	return strings.ToLower(u.Scheme) + "://" + host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
