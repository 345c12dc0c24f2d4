// Package worker turns one queued Dataverse event into its downstream effects: it decodes the
// canonical event (or the RemoteExecutionContext a Dataverse service endpoint posted straight to
// the queue, normalized as the intake would), skips the worker's own echoes, runs every route
// that matches (HTTP calls to the ERP and the credit scorer, Dataverse updates, a log line) and
// decides an Outcome: complete, retry later with back-off, or dead-letter with a reason. It knows nothing of the transport;
// a Settler, implemented once per queue backend at the edge, makes the outcome true.
//
// # Routes
//
// Routes are declared in routes.json (schema: routes.schema.json, embedded and checked at
// start). A route has a name, an optional match {entity, messages[], eventName, anyChanged[]}
// whose given conditions must all hold (anyChanged: any of these columns is in ChangedFields),
// and ordered steps. Every matching route runs, in file order; the first match does not stop
// the others. Step types: http (POST the event, or a projection of it, to a ${SETTING} URL;
// keep the JSON answer for later steps, optionally requiring typed fields), dataverse-update
// (PATCH columns of the event's record, or of a record named by a lookup, from $event.<path>,
// $steps.<step>.<path> or literals), dataverse-read (GET selected columns of the event's
// record, a lookup's target or a record named by id, kept for later steps: how a trimmed
// event gets its columns back) and log. A step whose ${SETTING} is unset is skipped, with
// one warning at start.
//
// # At least once
//
// Delivery is at least once. A message can be processed again after a lost lock, a crash, a
// retry or a failed settlement, and a retry runs every step again, including the ones that
// succeeded before. That is safe because every downstream call carries
// Idempotency-Key: <EventId> and Dataverse updates set values rather than add to them.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/logctx"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// EventDecoder decodes and validates a queue message body as a canonical event.
// *event.Parser implements it; invalid bodies yield *event.ValidationError or event.ErrMalformed.
type EventDecoder interface {
	DecodeCanonical(body []byte) (event.Event, error)
}

var _ EventDecoder = (*event.Parser)(nil)

// DefaultProcessTimeout bounds one delivery, quick retries included: well inside a Service Bus
// lock (host.json maxAutoLockRenewalDuration must be longer) and the host's functionTimeout.
const DefaultProcessTimeout = 2 * time.Minute

// Config is the worker's part of the settings, read once at start.
type Config struct {
	RoutesPath string // the routes file, routes.json at the app root by default
	// MaxAttempts is the number of delivery attempts before MaxAttemptsExceeded; 0 means
	// DefaultMaxAttempts (a schedule spanning at least six hours).
	MaxAttempts int
	// IgnoreUserIDs are systemuser ids (the worker's application user) whose changes never
	// trigger work: DVRELAY_IGNORE_USER_IDS.
	IgnoreUserIDs []string
	// WrittenColumns are columns the worker writes outside its routes; like the columns of the
	// dataverse-update steps, an event that changed only these is the worker's own echo.
	WrittenColumns []string
	// ProcessTimeout bounds one delivery; 0 means DefaultProcessTimeout.
	ProcessTimeout time.Duration
	// Retry overrides the back-off policy; zero fields take DefaultRetryPolicy's values.
	// MaxAttempts above wins over Retry.MaxAttempts when set.
	Retry RetryPolicy
	// StrictRoutes makes a step that would be skipped (DVRELAY_STRICT_ROUTES) a start-up
	// error: in production a step that is off completes every event without doing its work.
	StrictRoutes bool
	// Concurrency is the most deliveries processed at once (DVRELAY_WORKER_CONCURRENCY); the http
	// steps' client keeps that many connections per host for reuse. Zero means the outbound default.
	Concurrency int
}

// Deps are the worker's collaborators.
type Deps struct {
	Settings func(name string) (string, bool) // expands ${SETTING} in the routes file
	// SettingNames lists the names settings may have (the environment's); those Settings
	// holds a value for are checked against a ${SETTING} that is unset, to catch a misspelt
	// one. nil: no such check.
	SettingNames func() []string
	HTTPClient   *http.Client    // for http steps; nil means outbound.NewClient, which refuses redirects
	Dataverse    DataverseClient // nil: dataverse-update and dataverse-read steps are skipped, with a warning
	Decoder      EventDecoder
	Now          func() time.Time // the clock for RetryAt; nil means time.Now
	Jitter       func() float64   // a sample in [0,1); nil means math/rand/v2
	StepTypes    map[string]StepType
	// ObserveStep, when set, is told how each step that ran ended (metrics use it for latency).
	ObserveStep StepObserver
	// Native normalizes the RemoteExecutionContext Dataverse posts straight to a queue; nil means
	// Decoder, when it can (*event.Parser can). Without one such a message is an InvalidMessage.
	Native NativeParser
}

// StepObserver hears of one step run: its route and name, the time it took with its quick
// retries, and the class of its failure (0 when it succeeded or had nothing to do).
type StepObserver func(route, step string, took time.Duration, failure Class)

// Worker processes deliveries. It is safe for concurrent use.
type Worker struct {
	routes         []route
	written        writtenColumns
	ignore         map[string]bool
	decoder        EventDecoder
	native         NativeParser
	now            func() time.Time
	jitter         func() float64
	policy         RetryPolicy
	processTimeout time.Duration
	observeStep    StepObserver
	log            *slog.Logger
}

// New loads and checks the routes file and returns a worker. A routes file with errors fails
// here, naming the route, the step and the field; steps whose settings are unset are skipped
// with one warning each.
func New(cfg Config, deps Deps, log *slog.Logger) (*Worker, error) {
	if deps.Decoder == nil {
		return nil, errors.New("worker: an event decoder is required")
	}
	if deps.Settings == nil {
		return nil, errors.New("worker: a settings lookup is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		ignore:         make(map[string]bool),
		decoder:        deps.Decoder,
		native:         deps.Native,
		now:            deps.Now,
		jitter:         deps.Jitter,
		policy:         withDefaults(cfg.Retry),
		processTimeout: cfg.ProcessTimeout,
		observeStep:    deps.ObserveStep,
		log:            log,
	}
	if w.now == nil {
		w.now = time.Now
	}
	if p, ok := deps.Decoder.(NativeParser); ok && w.native == nil {
		w.native = p
	}
	if w.jitter == nil {
		w.jitter = rand.Float64
	}
	if cfg.MaxAttempts > 0 {
		w.policy.MaxAttempts = cfg.MaxAttempts
	}
	if w.processTimeout <= 0 {
		w.processTimeout = DefaultProcessTimeout
	}
	for _, id := range cfg.IgnoreUserIDs {
		// Events carry bare lower-case GUIDs; Dataverse's own screens show {GUID}.
		if id = strings.Trim(strings.TrimSpace(id), "{}"); id != "" {
			w.ignore[strings.ToLower(id)] = true
		}
	}
	types := builtinStepTypes()
	for name, t := range deps.StepTypes {
		if _, taken := types[name]; taken {
			return nil, fmt.Errorf("worker: step type %q is built in and cannot be replaced", name)
		}
		types[name] = t
	}
	client := deps.HTTPClient
	if client == nil {
		// Deadlines come from the step timeouts; the client's own only backs up the longest.
		client = outbound.NewClient(outbound.Options{Timeout: maxStepTimeout, MaxResponseBytes: maxResponseBody,
			Concurrency: cfg.Concurrency})
	}
	env := BuildEnv{
		Expand:     func(s string) (string, error) { return expandSettings(s, deps.Settings) },
		SetNames:   setNames(deps),
		HTTPClient: client,
		Dataverse:  deps.Dataverse,
		Now:        w.now,
	}
	set, err := loadRoutes(cfg.RoutesPath, types, env)
	if err != nil {
		return nil, err
	}
	if cfg.StrictRoutes && len(set.skipped) > 0 {
		return nil, &StrictRoutesError{Path: cfg.RoutesPath, Skipped: set.skipped}
	}
	w.routes = set.routes
	w.written = set.written
	w.written.add("", cfg.WrittenColumns)
	for _, s := range set.skipped {
		log.Warn("route step will be skipped", "detail", s)
	}
	log.Info("routes loaded", "path", cfg.RoutesPath, "routes", len(w.routes), "maxAttempts", w.policy.MaxAttempts)
	return w, nil
}

// setNames are the settings that hold a value, for the misspelling check.
func setNames(deps Deps) []string {
	if deps.SettingNames == nil {
		return nil
	}
	var out []string
	for _, name := range deps.SettingNames() {
		if v, ok := deps.Settings(name); ok && v != "" {
			out = append(out, name)
		}
	}
	return out
}

// StrictRoutesError stops a strict start: the steps that would be skipped, each with why.
type StrictRoutesError struct {
	Path    string
	Skipped []string // "route \"x\" step 1 (\"y\"): why"
}

func (e *StrictRoutesError) Error() string {
	return fmt.Sprintf("%s: DVRELAY_STRICT_ROUTES is on and %d step(s) would be skipped; set what they need or take them out of the routes file:\n  %s",
		e.Path, len(e.Skipped), strings.Join(e.Skipped, "\n  "))
}

// progress records where a delivery got to, so that a panic can still name the failing step.
type progress struct {
	event *event.Event
	route string
	step  string
}

// Process decides the outcome of one delivery. The chain is fixed here, outermost first:
//
//  1. recover: a panic is a bug in this code, not in the message, so it becomes a transient
//     failure (RetryLater, capped by MaxAttempts) and the event is not lost;
//  2. correlate: the delivery gets its own span in the trace the message carries (a new trace
//     when it carries none), which every downstream call sends as traceparent; every log line
//     carries correlationId, traceId, spanId and messageId, then eventId;
//  3. time out: the whole delivery, quick retries included, gets ProcessTimeout;
//  4. decode and validate: a canonical event, or a RemoteExecutionContext Dataverse posted to
//     the queue, normalized as the intake does (decode.go); an invalid body is dead-lettered at
//     once as InvalidMessage, a .NET Binary or XML one as UnsupportedMessageFormat (poison
//     never burns retries);
//  5. loop guard: events caused by the worker itself complete without work;
//  6. route match: no matching route completes without work;
//  7. steps, each try under its own timeout, with quick in-process retries;
//  8. outcome: complete, RetryLater on the back-off schedule, or DeadLetter with a reason.
func (w *Worker) Process(ctx context.Context, d queue.Delivery) (out queue.Outcome) {
	attempt := d.Attempt()
	span := deliverySpan(d)
	ctx = tracecontext.NewContext(ctx, span)
	logFor := func(correlationID string) *slog.Logger {
		// The ids the edge put in ctx (the host's invocationId) go on every line too: the
		// worker's lines are logged without ctx.
		return w.log.With(logctx.Args(ctx)...).With("correlationId", correlationID, "traceId", span.TraceID.String(), "spanId", span.SpanID.String(),
			"messageId", d.MessageID, "attempt", attempt)
	}
	log := logFor(d.CorrelationID)
	var at progress
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic while processing", "step", at.step, "route", at.route, "panic", panicText(v), "stack", string(debug.Stack()))
			out = w.transientFailure(attempt, &at, fmt.Errorf("panic: %s", panicText(v)), 0)
			w.logOutcome(log, out)
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, w.processTimeout)
	defer cancel()

	dec, err := w.decode(d)
	if err != nil {
		out = queue.Outcome{Kind: queue.DeadLetter, Reason: deadLetterReason(err), Description: err.Error()}
		out.Summary = fmt.Sprintf("dead-letter %s: %s", out.Reason, out.Description)
		w.logOutcome(log, out)
		return out
	}
	ev := dec.event
	at.event = &ev
	if dec.native && ev.CorrelationID != d.CorrelationID {
		// Dataverse may leave the message's CorrelationId empty: the context's is the one.
		log = logFor(ev.CorrelationID)
	}
	log = log.With("eventId", ev.EventID, "entity", ev.Entity, "message", ev.Message)
	if dec.native && ev.Trimmed {
		// Kept, never completed unseen: the routes run and a step can read the record back.
		log.Warn("event arrived trimmed: Dataverse dropped its columns and parameters above 192 KB",
			"source", ev.Source)
	}

	if why, skip := w.loopGuard(&ev); skip {
		out = queue.Outcome{Kind: queue.Complete, EventID: ev.EventID, Summary: "complete: skipped, " + why}
		w.logOutcome(log, out)
		return out
	}

	var matched []*route
	for i := range w.routes {
		if w.routes[i].match.matches(&ev) {
			matched = append(matched, &w.routes[i])
		}
	}
	if len(matched) == 0 {
		out = queue.Outcome{Kind: queue.Complete, EventID: ev.EventID, Summary: "complete: no route matches"}
		w.logOutcome(log, out)
		return out
	}

	steps, err := w.runRoutes(ctx, &ev, dec.doc, matched, attempt, log, &at)
	switch v := Classify(err); {
	case err == nil:
		names := make([]string, len(matched))
		for i, r := range matched {
			names[i] = r.name
		}
		out = queue.Outcome{Kind: queue.Complete, EventID: ev.EventID,
			Summary: fmt.Sprintf("complete: %d steps, routes %s", steps, strings.Join(names, ", "))}
	case v.Class == Permanent:
		out = queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: at.step, EventID: ev.EventID,
			Description: fmt.Sprintf("route %s step %s: %s", at.route, at.step, describe(err))}
		out.Summary = fmt.Sprintf("dead-letter %s: route %s step %s: %v", out.Reason, at.route, at.step, err)
	default:
		out = w.transientFailure(attempt, &at, err, v.RetryAfter)
	}
	w.logOutcome(log, out)
	return out
}

// transientFailure schedules the next attempt, or dead-letters once attempts are spent.
func (w *Worker) transientFailure(attempt int, at *progress, err error, retryAfter time.Duration) queue.Outcome {
	out := queue.Outcome{Step: at.step}
	if at.event != nil {
		out.EventID = at.event.EventID
	}
	where := "decode"
	if at.step != "" {
		where = fmt.Sprintf("route %s step %s", at.route, at.step)
	}
	if attempt >= w.policy.MaxAttempts {
		out.Kind = queue.DeadLetter
		out.Reason = queue.ReasonMaxAttemptsExceeded
		out.Description = fmt.Sprintf("attempt %d of %d failed: %s: %s", attempt, w.policy.MaxAttempts, where, describe(err))
		out.Summary = fmt.Sprintf("dead-letter %s: attempt %d of %d failed: %s: %v", out.Reason, attempt, w.policy.MaxAttempts, where, err)
		return out
	}
	out.Kind = queue.RetryLater
	out.Attempt = attempt + 1
	out.RetryAt = w.now().Add(w.policy.LaterDelay(attempt, retryAfter, w.jitter()))
	out.Description = fmt.Sprintf("%s: %s", where, describe(err))
	out.Summary = fmt.Sprintf("retry-later: attempt %d at %s after %s: %v", out.Attempt, out.RetryAt.UTC().Format(time.RFC3339), where, err)
	return out
}

// loopGuard reports why an event must not trigger work: it was made by a user the worker
// ignores (its own application user), or it changed nothing but columns the worker writes on
// that table.
func (w *Worker) loopGuard(ev *event.Event) (string, bool) {
	if ev.TriggeredBy != "" && w.ignore[strings.ToLower(ev.TriggeredBy)] {
		return "triggered by an ignored user", true
	}
	if len(ev.ChangedFields) == 0 {
		return "", false
	}
	for _, f := range ev.ChangedFields {
		if !w.written.has(ev.Entity, f) {
			return "", false
		}
	}
	return "only columns the worker writes changed", true
}

// runRoutes runs the matched routes in order and stops at the first failing step. It returns
// how many steps ran.
func (w *Worker) runRoutes(ctx context.Context, ev *event.Event, doc *eventDoc, routes []*route, attempt int, log *slog.Logger, at *progress) (int, error) {
	ran := 0
	for _, r := range routes {
		run := &Run{Event: ev, Route: r.name, Attempt: attempt, Log: log.With("route", r.name), doc: doc}
		at.route = r.name
		for i := range r.steps {
			at.step = r.steps[i].name
			if err := w.runStep(ctx, run, &r.steps[i]); err != nil {
				return ran, err
			}
			ran++
		}
	}
	at.route, at.step = "", ""
	return ran, nil
}

// runStep runs one step with quick in-process retries; each try gets its own timeout (a shared
// one would leave later tries with an expired context, watermill #467). It logs one line.
func (w *Worker) runStep(ctx context.Context, run *Run, s *boundStep) error {
	log := run.Log.With("step", s.name)
	if s.skip != "" {
		log.Info("step", "status", "skipped", "why", s.skip, "durationMs", 0)
		return nil
	}
	start := time.Now()
	var err error
	tries := 0
	for {
		tries++
		tryCtx, cancel := context.WithTimeout(ctx, s.timeout)
		err = s.step.Run(tryCtx, run)
		cancel()
		if err == nil || errors.Is(err, ErrNothingToDo) || tries >= w.policy.QuickAttempts || ctx.Err() != nil {
			break
		}
		v := Classify(err)
		if v.Class == Permanent {
			break
		}
		d, ok := w.policy.QuickWait(tries, v.RetryAfter, w.jitter())
		if !ok || wait(ctx, d) != nil {
			break
		}
	}
	took := time.Since(start)
	if w.observeStep != nil {
		var failure Class
		if err != nil && !errors.Is(err, ErrNothingToDo) {
			failure = Classify(err).Class
		}
		w.observeStep(run.Route, s.name, took, failure)
	}
	ms := took.Milliseconds()
	switch {
	case err == nil:
		log.Info("step", "status", "ok", "tries", tries, "durationMs", ms)
		return nil
	case errors.Is(err, ErrNothingToDo):
		log.Info("step", "status", "skipped", "why", err.Error(), "tries", tries, "durationMs", ms)
		return nil
	}
	log.Warn("step", "status", "failed", "class", Classify(err).Class.String(), "error", err.Error(), "tries", tries, "durationMs", ms)
	return err
}

func (w *Worker) logOutcome(log *slog.Logger, out queue.Outcome) {
	level := slog.LevelInfo
	if out.Kind != queue.Complete {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "outcome", "outcome", out.Kind.String(), "reason", out.Reason, "step", out.Step, "summary", out.Summary)
}

// panicText describes a panic value without echoing arbitrary data: runtime errors and errors
// are shown, anything else only by type (a panic value could hold column values).
func panicText(v any) string {
	switch e := v.(type) {
	case runtime.Error:
		return e.Error()
	case error:
		return fmt.Sprintf("%T", e)
	}
	return fmt.Sprintf("%T", v)
}
