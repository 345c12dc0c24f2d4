package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/oneline"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Explanation is what Process would do with one event, worked out without running a step:
// nothing is sent anywhere. It answers "why did my route not run?" before an event is real.
type Explanation struct {
	EventID string
	// LoopGuard says why the loop guard would complete the event without work (an ignored
	// user, only columns the worker writes changed); then no route runs.
	LoopGuard string
	Routes    []RouteExplanation
}

// RouteExplanation is one route of the routes file, in file order.
type RouteExplanation struct {
	Name    string
	Matches bool
	// Mismatch says which condition of the route's match does not hold.
	Mismatch string
	// Steps are the route's steps, when it matches.
	Steps []StepExplanation
}

// StepExplanation is one step of a matching route.
type StepExplanation struct {
	Name    string
	Type    string
	Timeout time.Duration
	// Target is what the step would call or write: a POST's URL with its ${SETTING}s resolved
	// (query values and passwords hidden: a URL setting may hold a function key), a PATCH's
	// record and columns. A step skipped for an unset setting shows the URL as declared.
	Target string
	// Skip says why the step would not run: a setting is unset, no Dataverse environment is
	// configured, a lookup is empty in this event.
	Skip string
	// Fails says why the step would fail for this event without calling anything.
	Fails string
}

// explainer is implemented by the built-in steps.
type explainer interface {
	// explain says what the step would do for r, without doing it. An error wrapping
	// ErrNothingToDo is a skip and any other a failure, as Run's would be.
	explain(r *Run) (string, error)
}

// Explain decodes body as Process does and reports what it would do: the loop guard's verdict,
// which routes match (and which condition failed for those that do not) and the steps that
// would run, with their targets, or why they would be skipped. An error means Process would
// dead-letter the body at once (InvalidMessage or UnsupportedMessageFormat).
func (w *Worker) Explain(body []byte) (Explanation, error) {
	dec, err := w.decode(queue.Delivery{Body: body})
	if err != nil {
		return Explanation{}, fmt.Errorf("dead-letter %s: %w", deadLetterReason(err), err)
	}
	ev, doc := dec.event, dec.doc
	ex := Explanation{EventID: ev.EventID}
	if why, skip := w.loopGuard(&ev); skip {
		ex.LoopGuard = why
	}
	for i := range w.routes {
		r := &w.routes[i]
		re := RouteExplanation{Name: r.name, Mismatch: r.match.mismatch(&ev)}
		re.Matches = re.Mismatch == ""
		if re.Matches {
			run := &Run{Event: &ev, Route: r.name, Attempt: 1, Log: slog.New(slog.DiscardHandler), doc: doc}
			for j := range r.steps {
				re.Steps = append(re.Steps, explainStep(run, &r.steps[j]))
			}
		}
		ex.Routes = append(ex.Routes, re)
	}
	return ex, nil
}

func explainStep(run *Run, s *boundStep) StepExplanation {
	se := StepExplanation{Name: s.name, Type: s.typ, Timeout: s.timeout}
	if s.skip != "" {
		se.Skip = s.skip
		se.Target = declaredTarget(s.decl)
		return se
	}
	e, ok := s.step.(explainer)
	if !ok {
		se.Target = "a custom step: its own code decides"
		return se
	}
	target, err := e.explain(run)
	se.Target = target
	switch {
	case errors.Is(err, ErrNothingToDo):
		se.Skip = err.Error()
	case err != nil:
		se.Fails = err.Error()
	}
	return se
}

// declaredTarget shows what a step that will not run is declared to call, ${SETTING}s as
// written: the setting's name says what to set.
func declaredTarget(decl json.RawMessage) string {
	var d struct {
		URL string                     `json:"url"`
		Set map[string]json.RawMessage `json:"set"`
	}
	_ = json.Unmarshal(decl, &d)
	switch {
	case d.URL != "":
		return "POST " + d.URL
	case len(d.Set) > 0:
		return "PATCH " + strings.Join(sortedKeys(d.Set), ", ")
	}
	return ""
}

func (s *httpStep) explain(*Run) (string, error) {
	target := "POST " + shownURL(s.url)
	if s.setting != s.url {
		target += " (" + s.setting + ")"
	}
	if s.selects != nil {
		paths := make([]string, len(s.selects))
		for i, p := range s.selects {
			paths[i] = strings.Join(p.path, ".")
		}
		target += " with " + strings.Join(paths, ", ")
	} else {
		target += " with the whole event"
	}
	return target, nil
}

// shownURL is a resolved URL as it may be printed: query values and user info hidden.
func shownURL(raw string) string { return oneline.URL(raw) }

func (s *updateStep) explain(r *Run) (string, error) {
	entity, id, err := s.record(r)
	if err != nil {
		return "PATCH the record named by lookup " + s.lookup, err
	}
	var set, absent []string
	for _, col := range sortedKeys(s.columns) {
		ref := s.columns[col]
		switch ref.source {
		case "steps":
			set = append(set, col+" = "+ref.text)
		case "event":
			if _, ok := ref.resolve(r); ok {
				set = append(set, col+" = "+ref.text)
			} else {
				absent = append(absent, col)
			}
		default:
			lit, _ := json.Marshal(ref.literal)
			set = append(set, col+" = "+string(lit))
		}
	}
	target := fmt.Sprintf("PATCH %s(%s)", entity, id)
	if len(set) > 0 {
		target += " " + strings.Join(set, ", ")
	}
	if len(absent) > 0 {
		// As Run does: an absent $event value is an unchanged column of an Update.
		target += "; left alone, not in this event: " + strings.Join(absent, ", ")
	}
	if len(set) == 0 {
		return target, fmt.Errorf("no values to write: %w", ErrNothingToDo)
	}
	return target, nil
}

func (logStep) explain(*Run) (string, error) {
	return "one log line with the event's ids and changed column names", nil
}

func (s *readStep) explain(r *Run) (string, error) {
	entity, id, err := s.target(r)
	if err != nil {
		what := "of this event"
		if s.record != nil {
			what = "named by " + s.ref()
		}
		return "GET the record " + what, err
	}
	return fmt.Sprintf("GET %s(%s) $select=%s", entity, id, strings.Join(s.columns, ",")), nil
}
