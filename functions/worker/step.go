package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// Step is one unit of work of a route. Run may be called more than once for the same event (quick
// retries, scheduled retries, redeliveries): steps must be idempotent by r.Event.EventId, which is
// why every built-in downstream call carries Idempotency-Key: <EventId>. Errors are classified
// by Classify (wrap with MarkPermanent for a reject no retry can fix) and end up in logs and
// dead-letter descriptions, so they must never quote a column value or a secret.
type Step interface {
	Run(ctx context.Context, r *Run) error
}

// StepType builds a Step from its declaration in the routes file. Built-in types are http,
// dataverse-update, dataverse-read and log; Deps.StepTypes adds more. Return a *SkipError when the step cannot
// run in this deployment (a setting is unset) and a plain error when the declaration is wrong.
type StepType func(decl StepDecl, env BuildEnv) (Step, error)

// StepDecl is a step as declared in the routes file.
type StepDecl struct {
	Route string
	Name  string
	Type  string
	Raw   json.RawMessage // the whole step object, for the type's own fields
	// Earlier holds the steps declared before this one in the same route, for $steps references.
	Earlier map[string]StepStatus
}

// StepStatus says whether an earlier step will run.
type StepStatus int

const (
	StepReady StepStatus = iota + 1
	StepSkipped
)

// BuildEnv is what a StepType may use to build its step.
type BuildEnv struct {
	// Expand replaces ${SETTING} and ${SETTING:-default} references; an unset setting without a
	// default yields a *SkipError.
	Expand func(string) (string, error)
	// SetNames are the settings that are set, so that a ${SETTING} that is not can be checked
	// for a misspelling; nil checks nothing.
	SetNames   []string
	HTTPClient *http.Client
	Dataverse  DataverseClient  // nil when no Dataverse environment is configured
	Now        func() time.Time // the worker's clock, for Retry-After dates
}

// SkipError reports that a step cannot run in this deployment. The worker starts anyway, warns
// once, and logs the step as skipped on every event (unless DVRELAY_STRICT_ROUTES stops it).
type SkipError struct {
	Reason string
	// Unset names the ${SETTING} references that caused the skip, if that was the cause; the
	// routes loader checks them for a misspelt name.
	Unset []string
}

func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// ColumnWriter is implemented by steps that write Dataverse columns; the loop guard ignores
// events that changed nothing but those columns.
type ColumnWriter interface {
	WrittenColumns() []string
}

// ErrNothingToDo is returned by a step that found nothing to do for this event (say, the lookup
// naming its target record is empty). The run goes on; the step is logged as skipped.
var ErrNothingToDo = errors.New("nothing to do for this event")

// Run is the state of one route running for one event.
type Run struct {
	Event   *event.Event
	Route   string
	Attempt int
	Log     *slog.Logger // carries correlationId, eventId and route

	doc       *eventDoc      // the event as generic JSON, for $event paths
	responses map[string]any // step name → decoded JSON response
}

// Keep stores a step's response for later steps of the route ($steps.<name>.<path>).
func (r *Run) Keep(step string, v any) {
	if r.responses == nil {
		r.responses = make(map[string]any)
	}
	r.responses[step] = v
}

// EventValue returns the value at a dotted path of the canonical event (RecordId,
// Attributes.estimatedvalue, Attributes.parentaccountid.id).
func (r *Run) EventValue(path []string) (any, bool) {
	return walk(r.doc.get(), path)
}

// StepValue returns the value at a dotted path of an earlier step's response.
func (r *Run) StepValue(step string, path []string) (any, bool) {
	v, ok := r.responses[step]
	if !ok {
		return nil, false
	}
	return walk(v, path)
}

// walk returns the value at path; a null counts as absent.
func walk(v any, path []string) (any, bool) {
	v, ok := walkPresent(v, path)
	return v, ok && v != nil
}

// eventDoc is the event as generic JSON with exact numbers, the form $event paths walk. It is
// decoded from the message body on first use only: most routes never walk a path.
type eventDoc struct {
	body  []byte
	doc   map[string]any
	ready bool
}

func (d *eventDoc) get() map[string]any {
	if d == nil {
		return nil
	}
	if !d.ready {
		d.ready = true
		dec := json.NewDecoder(bytes.NewReader(d.body))
		dec.UseNumber()
		// The body already passed the decoder's validation; a failure leaves an empty document.
		_ = dec.Decode(&d.doc)
	}
	return d.doc
}

// valueRef is a value in the routes file: a literal, "$event.<path>" or "$steps.<step>.<path>".
type valueRef struct {
	literal any
	source  string // "", "event" or "steps"
	step    string
	path    []string
	text    string
}

// parseValue reads a value declaration. References to steps must name an earlier step of the
// same route; a reference to a skipped step skips this one too.
func parseValue(raw json.RawMessage, earlier map[string]StepStatus) (valueRef, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return valueRef{}, err
	}
	s, ok := v.(string)
	if !ok {
		return valueRef{literal: v}, nil
	}
	switch {
	case strings.HasPrefix(s, "$event."):
		path := strings.Split(strings.TrimPrefix(s, "$event."), ".")
		if slices.Contains(path, "") {
			return valueRef{}, fmt.Errorf("%q: empty path segment", s)
		}
		return valueRef{source: "event", path: path, text: s}, nil
	case strings.HasPrefix(s, "$steps."):
		parts := strings.Split(strings.TrimPrefix(s, "$steps."), ".")
		if len(parts) < 2 || slices.Contains(parts, "") {
			return valueRef{}, fmt.Errorf("%q: want $steps.<step>.<field>", s)
		}
		switch earlier[parts[0]] {
		case StepReady:
		case StepSkipped:
			return valueRef{}, &SkipError{Reason: fmt.Sprintf("uses %s, and step %q is skipped", s, parts[0])}
		default:
			return valueRef{}, fmt.Errorf("%q: step %q is not an earlier step of this route", s, parts[0])
		}
		return valueRef{source: "steps", step: parts[0], path: parts[1:], text: s}, nil
	case strings.HasPrefix(s, "$"):
		return valueRef{}, fmt.Errorf("%q: a reference must start with $event or $steps", s)
	}
	return valueRef{literal: s}, nil
}

// resolve evaluates the value for run r. ok is false when the referenced value is absent. A
// field an earlier step's result holds as null resolves to null, present: a column that is
// empty in a record read is a value to copy. A null $event value stays absent, as an
// unchanged column of an Update is.
func (v valueRef) resolve(r *Run) (any, bool) {
	switch v.source {
	case "event":
		return r.EventValue(v.path)
	case "steps":
		res, ok := r.responses[v.step]
		if !ok {
			return nil, false
		}
		return walkPresent(res, v.path)
	}
	return v.literal, true
}

// walkPresent returns the value at path, which may be null; ok is false when a field on the
// path is missing.
func walkPresent(v any, path []string) (any, bool) {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}
