// Package explain is a dry run of the intake and the router on a saved payload: the checks it
// passes or the exact 4xx it would get, the canonical event, its EventId, the routes that match
// and the steps that would run, with their resolved targets, or why they would be skipped.
//
// It runs the intake itself (functions/webhook), with a publisher that keeps the message
// instead of queueing it, and the worker's own Explain, so it cannot drift from what a real
// event meets. Nothing is sent anywhere: the worker it is given is built with Offline.
package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Router is what explain needs from the worker. *worker.Worker implements it.
type Router interface {
	Explain(body []byte) (worker.Explanation, error)
}

var _ Router = (*worker.Worker)(nil)

// Request is a saved payload and the headers it would come with.
type Request struct {
	Body   []byte
	Header http.Header
}

// Verdict is how one intake check went.
type Verdict string

const (
	Pass       Verdict = "pass"
	Fail       Verdict = "FAIL"
	NotReached Verdict = "-"
)

// Check is one of the intake's checks, in the order the intake runs them.
type Check struct {
	Name    string
	Verdict Verdict
	Detail  string
}

// Report is what the intake and the worker would do with the payload.
type Report struct {
	Status  int // the intake's answer: 202, 200 for an event it would not queue (its stage), or the 4xx (or 500) it would give
	Checks  []Check
	Problem []byte // the problem+json answer when refused; the 200 answer when not queued
	// Event is the canonical event, the queue message body, when accepted.
	Event         []byte
	EventID       string
	CorrelationID string
	Routing       worker.Explanation
	// RoutingErr is set when the worker would not take the queued body (it would dead-letter it).
	RoutingErr error
}

// Accepted reports whether the intake would queue the event.
func (r *Report) Accepted() bool { return r.Status == http.StatusAccepted }

// Run takes the payload through the intake configured by cfg and, when the intake would queue
// it, through the router.
func Run(ctx context.Context, cfg webhook.Config, parser webhook.Parser, router Router, req Request) (*Report, error) {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	kept := &keeper{}
	in := webhook.New(cfg, parser, kept, slog.New(slog.DiscardHandler))
	resp := in.Handle(ctx, webhook.Request{
		Method:        http.MethodPost,
		Header:        req.Header,
		Body:          req.Body,
		ContentLength: int64(len(req.Body)),
	})
	rep := &Report{Status: resp.Status}
	rep.Checks = checks(cfg, in, req, resp.Status)
	msg := kept.message()
	if !rep.Accepted() || msg == nil {
		rep.Problem = resp.Body
		if rep.Status == http.StatusOK || rep.Status == http.StatusUnprocessableEntity {
			rep.Checks[len(rep.Checks)-1].Detail = notQueuedDetail(resp.Body, resp.Status)
		}
		return rep, nil
	}
	rep.Event = msg.Body
	rep.EventID = msg.MessageID
	rep.CorrelationID = msg.CorrelationID
	for i := range rep.Checks {
		if rep.Checks[i].Name == checkPayload {
			rep.Checks[i].Detail = payloadDetail(msg.Body)
		}
		if rep.Checks[i].Name == checkStage {
			rep.Checks[i].Detail = stageDetail(msg.Body)
		}
	}
	routing, err := router.Explain(msg.Body)
	if err != nil {
		rep.RoutingErr = err
		return rep, nil
	}
	rep.Routing = routing
	return rep, nil
}

// keeper is the intake's publisher: it keeps the message rather than queueing it.
type keeper struct {
	mu  sync.Mutex
	msg *queue.Message
}

func (k *keeper) Publish(_ context.Context, m *queue.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.msg = m
	return nil
}

func (k *keeper) message() *queue.Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.msg
}

const (
	checkSize        = "size"
	checkContentType = "content type"
	checkSecret      = "secret"
	checkPayload     = "payload"
	checkStage       = "stage"
)

// checks lists the intake's checks in its order (webhook.Intake.Handle: size limit, content
// type, secret, payload, stage policy) and places the failure by the status it answered: the
// checks before it passed, the ones after it were not reached.
func checks(cfg webhook.Config, in *webhook.Intake, req Request, status int) []Check {
	list := []Check{{Name: checkSize}, {Name: checkContentType}, {Name: checkSecret}, {Name: checkPayload}, {Name: checkStage}}
	failed := len(list)
	switch status {
	case http.StatusAccepted:
	case http.StatusOK, http.StatusUnprocessableEntity:
		failed = 4 // the stage policy: 200 not queued (a synchronous step), 422 (an asynchronous one)
	case http.StatusRequestEntityTooLarge:
		failed = 0
	case http.StatusUnsupportedMediaType:
		failed = 1
	case http.StatusUnauthorized:
		failed = 2
	default:
		// 400, or a 500 from a parser bug on this payload: every check before it passed.
		failed = 3
	}
	for i := range list {
		switch {
		case i < failed:
			list[i].Verdict = Pass
		case i == failed:
			list[i].Verdict = Fail
		default:
			list[i].Verdict = NotReached
		}
	}

	list[0].Detail = fmt.Sprintf("%d bytes, the limit is %d", len(req.Body), in.MaxBodyBytes())
	contentType := req.Header.Get("Content-Type")
	list[1].Detail = contentType
	switch {
	case contentType == "":
		list[1].Detail = "none sent, read as JSON (Dataverse sends application/json)"
	case list[1].Verdict == Fail:
		list[1].Detail += " is not JSON; send -H 'Content-Type: application/json'"
	}
	list[2].Detail = secretDetail(cfg, in.SecretHeader(), req.Header, list[2].Verdict)
	switch {
	case status == http.StatusBadRequest && !json.Valid(req.Body):
		list[3].Detail = "not JSON: " + syntaxDetail(req.Body)
	case status == http.StatusBadRequest:
		list[3].Detail = "invalid: the answer below lists each problem"
	case list[3].Verdict == Fail:
		list[3].Detail = "the intake failed on this payload (a bug: please report it with the file)"
	}
	for i := range list {
		if list[i].Verdict == NotReached {
			list[i].Detail = "not reached"
		}
	}
	return list
}

// syntaxDetail says where a body stops being JSON, as an editor shows it: a truncated file
// ends early, a hand-edited one has a stray character.
func syntaxDetail(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	err := dec.Decode(&v)
	if err == nil {
		if _, err = dec.Token(); err == nil {
			err = errors.New("more after the first JSON value")
		}
	}
	off := int64(len(body))
	why := "it ends before the JSON does (truncated?)"
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		off, why = max(syn.Offset-1, 0), syn.Error()
	case errors.Is(err, io.EOF) && len(bytes.TrimSpace(body)) == 0:
		why = "the file is empty"
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		why = err.Error()
	}
	before := body[:min(off, int64(len(body)))]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("%s, at line %d, column %d (byte %d)", why, line, col, off)
}

// secretDetail describes the secret check; name is the header the intake reads, its default
// applied.
func secretDetail(cfg webhook.Config, name string, h http.Header, v Verdict) string {
	configured := slices.ContainsFunc(cfg.Secrets, func(s []byte) bool { return len(s) > 0 })
	switch {
	case !configured:
		return "not checked: no webhook secret is configured (DVRELAY_WEBHOOK_SECRET)"
	case v == Pass:
		return fmt.Sprintf("the %s header matches", name)
	case h.Get(name) == "":
		return fmt.Sprintf("the %s header is missing; pass it with -H '%s: <secret>'", name, name)
	}
	return fmt.Sprintf("the %s header does not match a configured secret", name)
}

// stageDetail says which stage a queued event came from.
func stageDetail(body []byte) string {
	var ev struct {
		Stage int  `json:"Stage"`
		Mode  *int `json:"Mode"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Stage == 0 {
		return "the payload names no stage: queued"
	}
	detail := fmt.Sprintf("stage %d (%s)", ev.Stage, event.StageName(ev.Stage))
	if ev.Mode != nil {
		detail += ", " + event.ModeName(*ev.Mode)
	}
	return detail + ": accepted by DVRELAY_ACCEPT_STAGES"
}

// notQueuedDetail says why the stage policy left the event out, from the intake's answer.
func notQueuedDetail(body []byte, status int) string {
	var answer struct {
		Reason string `json:"reason"` // 200
		Detail string `json:"detail"` // 422
	}
	_ = json.Unmarshal(body, &answer)
	if status == http.StatusOK {
		return answer.Reason + ": answered 200 and not queued, since the step is synchronous and any other answer fails the user's save"
	}
	return answer.Detail
}

// payloadDetail names the payload's shape, as the canonical event's Source records it.
func payloadDetail(body []byte) string {
	var ev struct {
		Source  string `json:"Source"`
		Trimmed bool   `json:"Trimmed"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return "valid"
	}
	detail := "valid, source " + ev.Source
	switch ev.Source {
	case event.SourceWebhook:
		detail = "a valid RemoteExecutionContext, as a webhook step posts it"
	case event.SourcePlugin:
		detail = "a valid compact plugin event"
	}
	if ev.Trimmed {
		detail += "; trimmed by Dataverse (x-ms-dynamics-msg-size-exceeded): no column values"
	}
	return detail
}

// errOffline is what every call a dry run's worker might make fails with.
var errOffline = errors.New("explain sends nothing")

// Offline returns worker dependencies that cannot send anything: the HTTP client's transport
// refuses every request and the Dataverse updater every write. The worker built with them
// resolves settings and skips steps exactly as the real one does, since dataverse says
// whether a Dataverse environment is configured.
func Offline(settings func(string) (string, bool), decoder worker.EventDecoder, dataverse bool) worker.Deps {
	deps := worker.Deps{
		Settings:   settings,
		Decoder:    decoder,
		HTTPClient: &http.Client{Transport: refuseTransport{}},
	}
	if dataverse {
		deps.Dataverse = refuseDataverse{}
	}
	return deps
}

type refuseTransport struct{}

func (refuseTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, errOffline }

// refuseDataverse stands in for the Dataverse client: explain reads and writes nothing.
type refuseDataverse struct{}

func (refuseDataverse) Update(context.Context, string, string, map[string]any) error {
	return errOffline
}

func (refuseDataverse) Read(context.Context, string, string, []string) (map[string]json.RawMessage, error) {
	return nil, errOffline
}
