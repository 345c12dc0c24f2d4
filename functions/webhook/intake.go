// Package webhook is the intake function: it turns one webhook POST from Dataverse into one
// queued canonical event, or into an answer that tells Dataverse what went wrong. It knows nothing
// about the Functions host envelope or HTTP routing; transports build a Request and write the
// Response back.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Headers Dataverse sends that the intake reads.
const (
	headerCorrelationRequestID = "X-Ms-Correlation-Request-Id"
	headerMsgSizeExceeded      = "X-Ms-Dynamics-Msg-Size-Exceeded"
	// HeaderCorrelationID is on every answer, so a caller can quote it to support.
	HeaderCorrelationID = "X-Correlation-ID"
)

// Config tunes the intake. Zero fields take internal/config's defaults, so an intake built
// without settings (in a test, or by explain) answers as a deployed one does.
type Config struct {
	// MaxBodyBytes bounds the body (config.DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Secrets are the accepted shared secrets; more than one lets a secret be rotated without
	// downtime (add the new one, update the step registration, drop the old one). Empty turns
	// the check off: in Functions mode the host has already checked the function key.
	Secrets [][]byte
	// SecretHeader is the header the Dataverse "HttpHeader" auth option is configured to send
	// (config.DefaultSecretHeader).
	SecretHeader string
	// PublishTimeout bounds the wait for the broker's ack (config.DefaultPublishTimeout).
	PublishTimeout time.Duration
	// UseSessions sets SessionID = the record's order key, for per-record order on a session-enabled queue.
	UseSessions bool
	// MaxInFlight bounds the requests admitted at once (see Screen and Admit); the next one is
	// answered 503 at once rather than queued behind work the intake cannot finish in time
	// (config.DefaultMaxInFlight).
	MaxInFlight int
	// MaxBytesInFlight bounds the bytes of the bodies the intake holds at once, read or being
	// read (see ReadBody); zero is config.DefaultMaxBytesInFlight. Past it a request is answered 503
	// at once, as past MaxInFlight: what a body costs grows with its size.
	MaxBytesInFlight int64
	// AcceptStages are the pipeline stages whose events are queued; empty means PostOperation
	// (40) alone. See stages.go for what happens to the others.
	AcceptStages []int
}

// Parser turns a posted body into the canonical event. *event.Parser is the real one.
// Its errors are *event.ValidationError for schema problems and errors wrapping
// event.ErrMalformed for bodies that are not a JSON object.
type Parser interface {
	Parse(body []byte, h event.Hints) (event.Event, error)
}

// bufferedParser is a Parser that writes the event's values into a buffer the intake lends
// (event.Parser.ParseBuffered), so a request's values reuse the memory of the ones before.
type bufferedParser interface {
	ParseBuffered(body []byte, h event.Hints, buf *[]byte) (event.Event, error)
}

// Request is one webhook call as the transport received it.
type Request struct {
	Method string
	Header http.Header
	Body   []byte
	// BodyTooLarge is set by the transport when it read past the limit and stopped.
	BodyTooLarge bool
	// ContentLength is the declared length, or -1 when unknown.
	ContentLength int64
	// ReadErr is set by the transport when the body could not be read (the client went away
	// or stalled); the request is then answered 400 without looking at Body.
	ReadErr error
}

// Response is what the transport writes back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Intake validates, correlates and queues webhook events. It is safe for concurrent use.
type Intake struct {
	cfg    Config
	auth   *httpauth.Authorizer
	parser Parser
	pub    queue.Publisher
	log    *slog.Logger
	// slots holds one token per admitted request; its capacity is MaxInFlight.
	slots chan struct{}
	// bytes counts the bytes of bodies held, against MaxBytesInFlight.
	bytes  *byteBound
	stages *stagePolicy
	// refusalLog bounds the log lines of refused requests (see logBudget).
	refusalLog *logBudget
	// publishes tells health how the recent publishes went (PublishHealth).
	publishes *publishWatch
	// buffers lends the buffers of bodies, parsed values and encoded events.
	buffers *bufferPool
}

// New builds an intake that publishes through pub.
func New(cfg Config, p Parser, pub queue.Publisher, log *slog.Logger) *Intake {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	if cfg.SecretHeader == "" {
		cfg.SecretHeader = config.DefaultSecretHeader
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = config.DefaultPublishTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = config.DefaultMaxInFlight
	}
	if cfg.MaxBytesInFlight <= 0 {
		cfg.MaxBytesInFlight = config.DefaultMaxBytesInFlight(cfg.MaxBodyBytes, cfg.MaxInFlight)
	}
	// One whole body always fits, or a body at the limit could never be taken.
	cfg.MaxBytesInFlight = max(cfg.MaxBytesInFlight, cfg.MaxBodyBytes+1)
	in := &Intake{cfg: cfg, auth: httpauth.New(cfg.SecretHeader, cfg.Secrets...), parser: p, pub: pub, log: log,
		slots: make(chan struct{}, cfg.MaxInFlight), bytes: &byteBound{limit: cfg.MaxBytesInFlight},
		stages: newStagePolicy(cfg.AcceptStages), buffers: &bufferPool{}}
	in.cfg.Secrets = nil // the authorizer keeps digests only; don't keep the secrets around
	in.refusalLog = newLogBudget(in.logSuppressed)
	in.publishes = newPublishWatch(time.Now)
	return in
}

// MaxBodyBytes is the body limit in force, for transports that read the body.
func (in *Intake) MaxBodyBytes() int64 { return in.cfg.MaxBodyBytes }

// SecretHeader is the header the secret is read from, for tools that explain the check.
func (in *Intake) SecretHeader() string { return in.cfg.SecretHeader }

// accepted is the 202 body.
type accepted struct {
	EventID       string `json:"eventId"`
	CorrelationID string `json:"correlationId"`
	EventName     string `json:"eventName"`
	// Duplicate is true when the queue says it already held this EventId within its duplicate
	// window and dropped this copy (only the embedded queue can say so).
	Duplicate bool `json:"duplicate,omitempty"`
}

// notQueued is the 200 body for an event the stage policy leaves out.
type notQueued struct {
	EventID       string `json:"eventId"`
	CorrelationID string `json:"correlationId"`
	EventName     string `json:"eventName"`
	Queued        bool   `json:"queued"`
	Reason        string `json:"reason"`
}

// Handle runs the intake pipeline, in this order: method, size limit, content type, secret,
// parse, correlation ID, stage policy, publish. It answers 202 only once the publisher holds the
// event; 200 for an event of a synchronous step from a stage Config.AcceptStages leaves out, which
// is not queued (and 422 for an asynchronous one).
//
// The intake's span continues the caller's W3C trace (traceparent, or a W3C-compatible
// Request-Id), or starts a new trace when there is none or it is invalid; every answer carries
// it in traceparent, and the queued message carries it as the Service Bus SDKs do.
//
// Handle takes no place among MaxInFlight: transports call Screen before reading the body and
// Admit once it has arrived.
func (in *Intake) Handle(ctx context.Context, req Request) Response {
	start := time.Now()
	rec := newRecord(req.Header)
	resp, err := in.handleRecovered(ctx, req, &rec)
	return in.finish(ctx, rec, resp, err, start)
}

// newRecord starts the record of one request: the correlation ID the caller sent, and the
// intake's span in the caller's trace.
func newRecord(h http.Header) record {
	return record{
		correlationID: validCorrelationID(h.Get(headerCorrelationRequestID)),
		trace:         tracecontext.Continue(tracecontext.FromHeader(h)),
	}
}

// finish turns err into its problem, gives the answer its correlation ID and logs the request:
// every answer, admitted or not, leaves the intake through here. Refusals are logged within a
// budget per outcome (logBudget), so a flood of them writes a few lines and a count.
func (in *Intake) finish(ctx context.Context, rec record, resp Response, err error, start time.Time) Response {
	if rec.correlationID == "" {
		// Known nowhere: give the answer and the log line one anyway, so they can be matched.
		rec.correlationID = newCorrelationID()
	}
	if err != nil {
		resp = problemResponse(err, rec.correlationID)
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set(HeaderCorrelationID, rec.correlationID)
	resp.Header.Set(tracecontext.HeaderTraceparent, rec.trace.String())

	in.logRequest(ctx, rec, resp.Status, err, time.Since(start))
	return resp
}

// record is what the request log line may show: ids and names, never values.
type record struct {
	correlationID string
	eventID       string
	entity        string
	message       string
	stage         int
	// outcome overrides "accepted" for an answer that is not an error.
	outcome string
	trace   tracecontext.SpanContext
}

// handleRecovered turns a panic below (a parser bug on an odd payload) into the plain 500 of
// any unexpected error, so one bad request cannot take the process down with it.
func (in *Intake) handleRecovered(ctx context.Context, req Request, rec *record) (resp Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			// The panic value may quote the payload; its type and the stack are enough to debug.
			err = fmt.Errorf("panic %T in intake: %s", v, debug.Stack())
		}
	}()
	return in.handle(ctx, req, rec)
}

func (in *Intake) handle(ctx context.Context, req Request, rec *record) (Response, error) {
	if req.Method != http.MethodPost {
		return Response{}, errMethod()
	}
	if req.BodyTooLarge || req.ContentLength > in.cfg.MaxBodyBytes || int64(len(req.Body)) > in.cfg.MaxBodyBytes {
		return Response{}, in.errTooLarge()
	}
	if req.ReadErr != nil {
		var ierr *Error
		if errors.As(req.ReadErr, &ierr) {
			return Response{}, ierr // the bound on bytes in flight stopped the read (ReadBody)
		}
		return Response{}, &Error{Kind: KindInvalid, Detail: "the body could not be read", Err: req.ReadErr}
	}
	if err := in.checkMediaAndSecret(req.Header); err != nil {
		return Response{}, err
	}

	hints := event.Hints{
		SizeExceeded: req.Header.Get(headerMsgSizeExceeded) != "",
		ReceivedAt:   time.Now().UTC(),
	}
	ev, values, err := in.parse(req.Body, hints)
	// The values buffer backs ev's raw values until the message is encoded, not after.
	defer in.buffers.put(values)
	if err != nil {
		return Response{}, parseError(err)
	}
	rec.eventID, rec.entity, rec.message, rec.stage = ev.EventID, ev.Entity, ev.Message, ev.Stage
	if rec.correlationID == "" {
		rec.correlationID = validCorrelationID(ev.CorrelationID)
	}
	if rec.correlationID == "" {
		rec.correlationID = newCorrelationID()
	}
	ev.CorrelationID = rec.correlationID

	verdict := in.stages.verdict(&ev)
	in.stages.warnOnce(ctx, in.log, &ev, verdict)
	switch verdict {
	case stageRefuse:
		return Response{}, &Error{Kind: KindStageNotAccepted,
			Detail: in.stages.reason(&ev) + "; register the step at PostOperation (40), or add the stage to DVRELAY_ACCEPT_STAGES"}
	case stageDrop:
		rec.outcome = "not-queued-stage"
		return jsonResponse(http.StatusOK, notQueued{EventID: ev.EventID, CorrelationID: ev.CorrelationID,
			EventName: ev.EventName, Reason: in.stages.reason(&ev)})
	}

	msg, err := in.message(ev, rec.trace, len(values)+len(req.Body)/8+1024)
	if err != nil {
		return Response{}, err
	}
	duplicate, err := in.publish(ctx, msg)
	if err != nil {
		return Response{}, &Error{Kind: KindUnavailable, Detail: "the event could not be queued; retry later", Err: err}
	}

	return jsonResponse(http.StatusAccepted, accepted{EventID: ev.EventID, CorrelationID: ev.CorrelationID, EventName: ev.EventName, Duplicate: duplicate})
}

// parse runs the parser, in a buffer from the pool when it takes one; values is that buffer, for
// the caller to give back once it is done with the event.
func (in *Intake) parse(body []byte, h event.Hints) (ev event.Event, values []byte, err error) {
	bp, ok := in.parser.(bufferedParser)
	if !ok {
		ev, err = in.parser.Parse(body, h)
		return ev, nil, err
	}
	values = in.buffers.get(len(body))
	ev, err = bp.ParseBuffered(body, h, &values)
	return ev, values, err
}

// jsonResponse is a success answer with a JSON body.
func jsonResponse(status int, body any) (Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Response{}, fmt.Errorf("encode %d answer: %w", status, err)
	}
	return Response{
		Status: status,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   b,
	}, nil
}

func errMethod() error { return &Error{Kind: KindMethodNotAllowed, Detail: "only POST is accepted"} }

func (in *Intake) errTooLarge() error {
	return &Error{Kind: KindTooLarge, Detail: fmt.Sprintf("the body exceeds %d bytes", in.cfg.MaxBodyBytes)}
}

// checkMediaAndSecret is the part of the pipeline the headers alone decide after method and size.
func (in *Intake) checkMediaAndSecret(h http.Header) error {
	if err := checkContentType(h.Get("Content-Type")); err != nil {
		return err
	}
	if !in.auth.Allows(h) {
		return &Error{Kind: KindUnauthorized, Detail: httpauth.Refusal().Detail}
	}
	return nil
}

// checkContentType accepts JSON media types (application/json, anything+json) with or without
// parameters. A missing Content-Type is accepted: Dataverse always posts JSON, but the docs do
// not pin the header, and the parser rejects a body that is not JSON anyway, with a clearer
// answer than 415 would be.
func checkContentType(v string) error {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return &Error{Kind: KindUnsupportedMediaType, Detail: "the body must be JSON (Content-Type: application/json)"}
}

// parseError classifies a parser error: both kinds of bad payload are the sender's to fix;
// anything else is our bug and becomes a plain 500.
func parseError(err error) error {
	var verr *event.ValidationError
	if errors.As(err, &verr) {
		detail := "the payload failed validation"
		if verr.Kind != "" {
			detail = "the payload is not a valid " + verr.Kind
		}
		return &Error{Kind: KindInvalid, Detail: detail, Problems: verr.Problems, Err: err}
	}
	if errors.Is(err, event.ErrMalformed) {
		return &Error{Kind: KindInvalid, Detail: "the body is not a JSON object", Err: err}
	}
	return fmt.Errorf("parse payload: %w", err)
}

// message is the queue message for ev, carrying the intake's span so the worker continues the
// caller's trace. size is about what the encoded event will take.
func (in *Intake) message(ev event.Event, trace tracecontext.SpanContext, size int) (*queue.Message, error) {
	scratch := in.buffers.get(size)
	body, err := event.AppendCanonical(scratch, &ev)
	// The publisher may keep the body (a queue that hands it to its worker in memory), so it
	// gets a copy of its own, exactly its size; the scratch goes back to the pool.
	body = bytes.Clone(body)
	in.buffers.put(scratch)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	m := eventMessage(ev, body, in.cfg.UseSessions)
	tracecontext.SetProperties(m.ApplicationProperties, trace)
	return m, nil
}

// EventMessage is the queue message that carries ev, as the intake publishes it: MessageID is
// the EventId (duplicate detection), Subject the EventName, the OrderKey property the record's
// order key (queue.OrderKey: Entity and RecordId), and with useSessions SessionID is that key.
// Anything else that queues an event (handler recover) builds it here, so the worker sees one
// shape. An event that names no record (an unbound message) has no order key and takes its
// EventId as SessionID: a session-enabled queue refuses a message without one, and such an event
// has no record whose order to keep.
func EventMessage(ev event.Event, useSessions bool) (*queue.Message, error) {
	body, err := event.AppendCanonical(nil, &ev)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	return eventMessage(ev, body, useSessions), nil
}

// eventMessage is EventMessage with the body already encoded.
func eventMessage(ev event.Event, body []byte, useSessions bool) *queue.Message {
	m := &queue.Message{
		MessageID:     ev.EventID,
		CorrelationID: ev.CorrelationID,
		Subject:       ev.EventName,
		ContentType:   "application/json",
		Body:          body,
		ApplicationProperties: map[string]any{
			queue.PropAttempt:   int64(1),
			queue.PropEventName: ev.EventName,
			queue.PropEntity:    ev.Entity,
			// The worker decodes a body that still matches it without checking it again.
			event.PropCanonical: event.CanonicalSum(body),
		},
	}
	key := queue.OrderKey(ev.Entity, ev.RecordID)
	if key != "" {
		m.ApplicationProperties[queue.PropOrderKey] = key
	}
	if useSessions {
		m.SessionID = firstNonEmpty(key, ev.EventID)
	}
	return m
}

// publish waits for the publisher at most PublishTimeout, even if the publisher ignores its
// context: the caller gets its 503 in time, and a late success only makes Dataverse's retry a
// duplicate that the queue drops by MessageID. A publisher panic is recovered here, because
// Handle's recover does not reach this goroutine; it is a failure to queue like any other.
// duplicate is true only when the publisher can tell (queue.DuplicateReporter) and did drop m.
func (in *Intake) publish(ctx context.Context, m *queue.Message) (duplicate bool, err error) {
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, in.cfg.PublishTimeout)
	defer cancel()
	// The watch sees the publisher's own end, however late, not the caller's timeout: a frozen
	// disk stays visible to health for as long as it holds the publish.
	watched := in.publishes.start()
	type result struct {
		duplicate bool
		err       error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if v := recover(); v != nil {
				// The panic value may quote the message; its type and the stack are enough.
				r = result{err: fmt.Errorf("publisher panic %T: %s", v, debug.Stack())}
			}
			watched(r.err, caller.Err() != nil)
			done <- r
		}()
		if dr, ok := in.pub.(queue.DuplicateReporter); ok {
			r.duplicate, r.err = dr.PublishReporting(ctx, m)
			return
		}
		r.err = in.pub.Publish(ctx, m)
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return false, fmt.Errorf("publish %s: %w", m.MessageID, r.err)
		}
		return r.duplicate, nil
	case <-ctx.Done():
		return false, fmt.Errorf("publish %s: %w", m.MessageID, ctx.Err())
	}
}

func (in *Intake) logRequest(ctx context.Context, rec record, status int, err error, d time.Duration) {
	level, outcome := slog.LevelInfo, "accepted"
	var ierr *Error
	switch {
	case err == nil && rec.outcome != "":
		outcome = rec.outcome
	case err == nil:
	case errors.As(err, &ierr):
		outcome = ierr.Kind.String()
		level = slog.LevelWarn
		if ierr.Kind == KindUnavailable {
			level = slog.LevelError
		}
	default:
		outcome, level = "internal-error", slog.LevelError
	}
	if !in.log.Enabled(ctx, level) || (err != nil && !in.refusalLog.allow(outcome, status, level)) {
		return
	}
	attrs := []slog.Attr{
		slog.String("correlationId", rec.correlationID),
		slog.String("traceId", rec.trace.TraceID.String()),
		slog.String("spanId", rec.trace.SpanID.String()),
		slog.String("eventId", rec.eventID),
		slog.String("entity", rec.entity),
		slog.String("message", rec.message),
		slog.String("outcome", outcome),
		slog.Int("stage", rec.stage),
		slog.Int("status", status),
		slog.Int64("durationMs", d.Milliseconds()),
	}
	if err != nil && level == slog.LevelError {
		// Publisher and internal errors carry ids and causes, not payload values.
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	in.log.LogAttrs(ctx, level, "webhook intake", attrs...)
}

// logSuppressed writes the line that stands for the request lines of one refusal outcome that
// the log budget held back. infra/queries/failures-last-hour.kql counts it by notLogged.
func (in *Intake) logSuppressed(outcome string, status int, level slog.Level, suppressed int) {
	in.log.LogAttrs(context.Background(), level, MsgRefusalsNotLogged,
		slog.String("outcome", outcome),
		slog.Int("status", status),
		slog.Int("notLogged", suppressed),
		slog.Int("loggedPerSecond", refusalLinesPerSecond))
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
