package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/google/uuid"
)

// fakeParser reads a tiny subset of the canonical event and fails the way *event.Parser does.
type fakeParser struct {
	mu    sync.Mutex
	hints []event.Hints
	err   error // returned as is when set
}

func (p *fakeParser) Parse(body []byte, h event.Hints) (event.Event, error) {
	p.mu.Lock()
	p.hints = append(p.hints, h)
	p.mu.Unlock()
	if p.err != nil {
		return event.Event{}, p.err
	}
	var ev event.Event
	if err := json.Unmarshal(body, &ev); err != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return event.Event{}, fmt.Errorf("fake parser: %w", event.ErrMalformed)
	}
	if ev.EventID == "" {
		return event.Event{}, &event.ValidationError{Kind: "PluginEvent", Problems: []event.FieldProblem{
			{Pointer: "/EventId", Detail: "is required"},
		}}
	}
	return ev, nil
}

// recordingPublisher keeps what it was asked to publish, and can fail or hang.
type recordingPublisher struct {
	mu       sync.Mutex
	got      []*queue.Message
	err      error
	hang     bool          // wait for ctx
	block    chan struct{} // wait for this, ignoring ctx
	deadline bool          // records whether ctx had a deadline
	panics   any           // panic with this when set
}

func (p *recordingPublisher) Publish(ctx context.Context, m *queue.Message) error {
	_, hasDeadline := ctx.Deadline()
	p.mu.Lock()
	p.deadline = hasDeadline
	p.mu.Unlock()
	if p.panics != nil {
		panic(p.panics)
	}
	if p.block != nil {
		<-p.block
		return nil
	}
	if p.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if p.err != nil {
		return p.err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, m)
	return nil
}

func (p *recordingPublisher) messages() []*queue.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*queue.Message(nil), p.got...)
}

// syncBuffer is a log sink safe for the publisher goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	secret     = "s3cret-value-0123456789"
	validEvent = `{"EventId":"evt-1","EventName":"OpportunityUpdated","Entity":"opportunity","Message":"Update",` +
		`"RecordId":"2f9ad1b4-0000-4000-8000-000000000001","CorrelationId":"payload-corr-1",` +
		`"Attributes":{"name":"Top secret deal"}}`
)

type harness struct {
	in     *webhook.Intake
	parser *fakeParser
	pub    *recordingPublisher
	logs   *syncBuffer
}

func newHarness(t *testing.T, cfg webhook.Config) *harness {
	t.Helper()
	h := &harness{parser: &fakeParser{}, pub: &recordingPublisher{}, logs: &syncBuffer{}}
	if cfg.Secrets == nil {
		cfg.Secrets = [][]byte{[]byte(secret)}
	}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.in = webhook.New(cfg, h.parser, h.pub, log)
	return h
}

func validRequest() webhook.Request {
	return webhook.Request{
		Method: http.MethodPost,
		Header: http.Header{
			"Content-Type":     {"application/json; charset=utf-8"},
			"X-Dvrelay-Secret": {secret},
		},
		Body:          []byte(validEvent),
		ContentLength: int64(len(validEvent)),
	}
}

type problemDoc struct {
	Type          string               `json:"type"`
	Title         string               `json:"title"`
	Status        int                  `json:"status"`
	Detail        string               `json:"detail"`
	CorrelationID string               `json:"correlationId"`
	Errors        []event.FieldProblem `json:"errors"`
}

func decodeProblem(t *testing.T, res webhook.Response) problemDoc {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problemDoc
	if err := json.Unmarshal(res.Body, &p); err != nil {
		t.Fatalf("problem body %q: %v", res.Body, err)
	}
	if p.Status != res.Status {
		t.Errorf("problem status %d, response status %d", p.Status, res.Status)
	}
	return p
}

func TestIntake_accepts_a_valid_event_with_202_after_publishing(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	res := h.in.Handle(context.Background(), validRequest())

	if res.Status != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"eventId": "evt-1", "correlationId": "payload-corr-1", "eventName": "OpportunityUpdated"}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("body[%s] = %q, want %q", k, body[k], v)
		}
	}
	if got := res.Header.Get("X-Correlation-ID"); got != "payload-corr-1" {
		t.Errorf("X-Correlation-ID = %q", got)
	}

	msgs := h.pub.messages()
	if len(msgs) != 1 {
		t.Fatalf("published %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.MessageID != "evt-1" || m.CorrelationID != "payload-corr-1" || m.Subject != "OpportunityUpdated" ||
		m.ContentType != "application/json" || m.SessionID != "" {
		t.Errorf("message = %+v", m)
	}
	wantProps := map[string]any{queue.PropAttempt: int64(1), queue.PropEventName: "OpportunityUpdated", queue.PropEntity: "opportunity"}
	for k, v := range wantProps {
		if m.ApplicationProperties[k] != v {
			t.Errorf("property %s = %#v, want %#v", k, m.ApplicationProperties[k], v)
		}
	}
	var ev event.Event
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		t.Fatalf("message body is not an event: %v", err)
	}
	if ev.EventID != "evt-1" || ev.CorrelationID != "payload-corr-1" {
		t.Errorf("queued event = %+v", ev)
	}
	h.pub.mu.Lock()
	if !h.pub.deadline {
		t.Error("publish context had no deadline")
	}
	h.pub.mu.Unlock()
}

func TestIntake_sets_SessionID_to_the_records_order_key_when_sessions_are_on(t *testing.T) {
	h := newHarness(t, webhook.Config{UseSessions: true})
	if res := h.in.Handle(context.Background(), validRequest()); res.Status != http.StatusAccepted {
		t.Fatalf("status = %d", res.Status)
	}
	const key = "opportunity/2f9ad1b4-0000-4000-8000-000000000001"
	m := h.pub.messages()[0]
	if m.SessionID != key {
		t.Errorf("SessionID = %q, want the order key %q (Entity + RecordId)", m.SessionID, key)
	}
	if got := m.ApplicationProperties[queue.PropOrderKey]; got != key {
		t.Errorf("OrderKey property = %#v, want %q", got, key)
	}
}

func TestIntake_names_the_records_order_key_when_sessions_are_off(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	if res := h.in.Handle(context.Background(), validRequest()); res.Status != http.StatusAccepted {
		t.Fatalf("status = %d", res.Status)
	}
	m := h.pub.messages()[0]
	if got := m.ApplicationProperties[queue.PropOrderKey]; got != "opportunity/2f9ad1b4-0000-4000-8000-000000000001" {
		t.Errorf("OrderKey property = %#v: the embedded queue orders on it whatever the session setting", got)
	}
	if m.SessionID != "" {
		t.Errorf("SessionID = %q with sessions off", m.SessionID)
	}
}

func TestIntake_rejects_bad_requests_with_a_problem_and_publishes_nothing(t *testing.T) {
	cases := []struct {
		name     string
		edit     func(*webhook.Request)
		status   int
		typ      string
		errorsAt []string // JSON pointers expected in errors
	}{
		{"GET is not allowed", func(r *webhook.Request) { r.Method = http.MethodGet }, 405, "method-not-allowed", nil},
		{"transport flagged the body as too large", func(r *webhook.Request) { r.BodyTooLarge = true }, 413, "payload-too-large", nil},
		{"body longer than the limit", func(r *webhook.Request) {
			r.Body = append([]byte(validEvent), bytes.Repeat([]byte(" "), 2048)...)
		}, 413, "payload-too-large", nil},
		{"declared length over the limit", func(r *webhook.Request) { r.ContentLength = 1 << 30 }, 413, "payload-too-large", nil},
		{"text/plain", func(r *webhook.Request) { r.Header.Set("Content-Type", "text/plain") }, 415, "unsupported-media-type", nil},
		{"form post", func(r *webhook.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, 415, "unsupported-media-type", nil},
		{"unparsable content type", func(r *webhook.Request) { r.Header.Set("Content-Type", "application/json; =;") }, 415, "unsupported-media-type", nil},
		{"missing secret", func(r *webhook.Request) { r.Header.Del("X-Dvrelay-Secret") }, 401, "unauthorized", nil},
		{"wrong secret", func(r *webhook.Request) { r.Header.Set("X-Dvrelay-Secret", "guess") }, 401, "unauthorized", nil},
		{"secret with a suffix", func(r *webhook.Request) { r.Header.Set("X-Dvrelay-Secret", secret+"x") }, 401, "unauthorized", nil},
		{"malformed body", func(r *webhook.Request) { r.Body = []byte(`[1,2`) }, 400, "invalid-payload", nil},
		{"body failing validation", func(r *webhook.Request) { r.Body = []byte(`{"EventName":"X"}`) }, 400, "invalid-payload", []string{"/EventId"}},
		{"body that could not be read", func(r *webhook.Request) { r.Body, r.ReadErr = nil, io.ErrUnexpectedEOF }, 400, "invalid-payload", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, webhook.Config{MaxBodyBytes: 1024})
			req := validRequest()
			tc.edit(&req)
			res := h.in.Handle(context.Background(), req)

			if res.Status != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", res.Status, tc.status, res.Body)
			}
			p := decodeProblem(t, res)
			if want := webhook.ProblemTypeBase + tc.typ; p.Type != want {
				t.Errorf("type = %q, want %q", p.Type, want)
			}
			if p.Title == "" || p.Detail == "" {
				t.Errorf("problem lacks title or detail: %+v", p)
			}
			if p.CorrelationID == "" || p.CorrelationID != res.Header.Get("X-Correlation-ID") {
				t.Errorf("correlationId %q, header %q", p.CorrelationID, res.Header.Get("X-Correlation-ID"))
			}
			var pointers []string
			for _, e := range p.Errors {
				pointers = append(pointers, e.Pointer)
			}
			if fmt.Sprint(pointers) != fmt.Sprint(tc.errorsAt) {
				t.Errorf("errors at %v, want %v", pointers, tc.errorsAt)
			}
			if tc.status == 405 && res.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q", res.Header.Get("Allow"))
			}
			if strings.Contains(string(res.Body), secret) {
				t.Error("the answer echoes the secret")
			}
			if n := len(h.pub.messages()); n != 0 {
				t.Errorf("published %d messages", n)
			}
		})
	}
}

func TestIntake_checks_the_secret_before_parsing(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Del("X-Dvrelay-Secret")
	h.in.Handle(context.Background(), req)
	if len(h.parser.hints) != 0 {
		t.Error("an unauthenticated body reached the parser")
	}
}

func TestIntake_accepts_JSON_media_types_and_a_missing_content_type(t *testing.T) {
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.dvrelay+json", ""} {
		t.Run(ct, func(t *testing.T) {
			h := newHarness(t, webhook.Config{})
			req := validRequest()
			req.Header.Set("Content-Type", ct)
			if ct == "" {
				req.Header.Del("Content-Type")
			}
			if res := h.in.Handle(context.Background(), req); res.Status != http.StatusAccepted {
				t.Errorf("status = %d, body %s", res.Status, res.Body)
			}
		})
	}
}

func TestIntake_accepts_either_secret_during_rotation(t *testing.T) {
	h := newHarness(t, webhook.Config{Secrets: [][]byte{[]byte("old-secret"), []byte("new-secret-longer")}})
	for _, s := range []string{"old-secret", "new-secret-longer"} {
		req := validRequest()
		req.Header.Set("X-Dvrelay-Secret", s)
		if res := h.in.Handle(context.Background(), req); res.Status != http.StatusAccepted {
			t.Errorf("secret %q: status = %d", s, res.Status)
		}
	}
	req := validRequest()
	req.Header.Set("X-Dvrelay-Secret", "old-secret-longer")
	if res := h.in.Handle(context.Background(), req); res.Status != http.StatusUnauthorized {
		t.Errorf("mixed secret: status = %d", res.Status)
	}
}

func TestIntake_reads_the_secret_from_the_configured_header(t *testing.T) {
	h := newHarness(t, webhook.Config{SecretHeader: "x-dv-webhook-secret"})
	req := validRequest()
	req.Header.Del("X-Dvrelay-Secret")
	req.Header.Set("x-dv-webhook-secret", secret)
	if res := h.in.Handle(context.Background(), req); res.Status != http.StatusAccepted {
		t.Errorf("status = %d", res.Status)
	}
}

func TestIntake_skips_the_secret_check_when_no_secret_is_configured(t *testing.T) {
	h := newHarness(t, webhook.Config{Secrets: [][]byte{}})
	req := validRequest()
	req.Header.Del("X-Dvrelay-Secret")
	if res := h.in.Handle(context.Background(), req); res.Status != http.StatusAccepted {
		t.Errorf("status = %d", res.Status)
	}
}

func TestIntake_answers_503_with_Retry_After_when_the_event_cannot_be_queued(t *testing.T) {
	cases := []struct {
		name string
		pub  *recordingPublisher
	}{
		{"publisher fails", &recordingPublisher{err: errors.New("amqp: link detached")}},
		{"publisher hangs until its context ends", &recordingPublisher{hang: true}},
		{"publisher ignores its context", &recordingPublisher{block: make(chan struct{})}},
		// A panic on the publishing goroutine is out of Handle's recover: unhandled, it would
		// take every in-flight request and the consumer down with the process.
		{"publisher panics", &recordingPublisher{panics: "assignment to entry in nil map"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pub.block != nil {
				t.Cleanup(func() { close(tc.pub.block) })
			}
			logs := &syncBuffer{}
			in := webhook.New(webhook.Config{PublishTimeout: 50 * time.Millisecond, Secrets: [][]byte{[]byte(secret)}},
				&fakeParser{}, tc.pub, slog.New(slog.NewJSONHandler(logs, nil)))

			done := make(chan webhook.Response, 1)
			go func() { done <- in.Handle(context.Background(), validRequest()) }()
			var res webhook.Response
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Handle did not return long after the publish timeout")
			}

			if res.Status != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, body %s", res.Status, res.Body)
			}
			if res.Header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			p := decodeProblem(t, res)
			if p.Type != webhook.ProblemTypeBase+"unavailable" {
				t.Errorf("type = %q", p.Type)
			}
			if strings.Contains(string(res.Body), "evt-1") || strings.Contains(string(res.Body), "accepted") {
				t.Errorf("a 503 claims the event: %s", res.Body)
			}
			if len(tc.pub.messages()) != 0 {
				t.Error("publisher recorded a message")
			}
			if !strings.Contains(logs.String(), `"status":503`) {
				t.Errorf("no 503 log line: %s", logs.String())
			}
			if tc.pub.panics != nil && strings.Contains(logs.String(), fmt.Sprint(tc.pub.panics)) {
				t.Errorf("the panic value reached the logs: %s", logs.String())
			}
		})
	}
}

func TestIntake_takes_the_correlation_id_from_header_then_payload_then_a_new_uuid(t *testing.T) {
	const headerID = "6b1c0e2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b"
	cases := []struct {
		name    string
		header  string
		payload string
		want    string // "" means a fresh UUID
	}{
		{"header wins over payload", headerID, "payload-corr-1", headerID},
		{"payload when no header", "", "payload-corr-1", "payload-corr-1"},
		{"payload when the header is not an id", "<script>", "payload-corr-1", "payload-corr-1"},
		{"payload when the header is too long", strings.Repeat("a", 65), "payload-corr-1", "payload-corr-1"},
		{"new uuid when neither", "", "", ""},
		{"new uuid when the payload's is not an id", "", "a b c", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, webhook.Config{})
			req := validRequest()
			req.Body = []byte(fmt.Sprintf(`{"EventId":"evt-1","EventName":"E","Entity":"account","CorrelationId":%q}`, tc.payload))
			if tc.header != "" {
				req.Header.Set("x-ms-correlation-request-id", tc.header)
			}
			res := h.in.Handle(context.Background(), req)
			if res.Status != http.StatusAccepted {
				t.Fatalf("status = %d", res.Status)
			}
			got := res.Header.Get("X-Correlation-ID")
			if tc.want == "" {
				if _, err := uuid.Parse(got); err != nil {
					t.Errorf("correlation id %q is not a new UUID", got)
				}
			} else if got != tc.want {
				t.Errorf("correlation id = %q, want %q", got, tc.want)
			}
			m := h.pub.messages()[0]
			var ev event.Event
			_ = json.Unmarshal(m.Body, &ev)
			if m.CorrelationID != got || ev.CorrelationID != got {
				t.Errorf("message %q / event %q, answer %q", m.CorrelationID, ev.CorrelationID, got)
			}
		})
	}
}

func TestIntake_gives_early_rejections_the_header_correlation_id(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Set("x-ms-correlation-request-id", "corr-from-dataverse")
	req.Header.Del("X-Dvrelay-Secret")
	res := h.in.Handle(context.Background(), req)
	if got := res.Header.Get("X-Correlation-ID"); got != "corr-from-dataverse" {
		t.Errorf("X-Correlation-ID = %q", got)
	}
}

func TestIntake_tells_the_parser_when_dataverse_trimmed_the_payload(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Set("x-ms-dynamics-msg-size-exceeded", "true")
	h.in.Handle(context.Background(), req)
	h.in.Handle(context.Background(), validRequest())
	if len(h.parser.hints) != 2 || !h.parser.hints[0].SizeExceeded || h.parser.hints[1].SizeExceeded {
		t.Errorf("hints = %+v", h.parser.hints)
	}
	if h.parser.hints[0].ReceivedAt.IsZero() {
		t.Error("ReceivedAt not set")
	}
}

func TestIntake_answers_unexpected_parser_errors_with_a_bare_500(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	h.parser.err = errors.New("schema cache corrupted at /internal/path")
	res := h.in.Handle(context.Background(), validRequest())
	if res.Status != http.StatusInternalServerError {
		t.Fatalf("status = %d", res.Status)
	}
	p := decodeProblem(t, res)
	if p.Type != "about:blank" || p.Detail != "" || strings.Contains(string(res.Body), "schema") {
		t.Errorf("500 leaks detail: %s", res.Body)
	}
}

func TestIntake_logs_every_accepted_event_however_many_arrive(t *testing.T) {
	// Refusals are logged within a budget a second; an accepted event's line is how it is
	// traced, so none is ever held back.
	h := newHarness(t, webhook.Config{})
	const n = 100
	for range n {
		if res := h.in.Handle(context.Background(), validRequest()); res.Status != http.StatusAccepted {
			t.Fatalf("status %d, want 202", res.Status)
		}
	}
	if got := strings.Count(h.logs.String(), `"outcome":"accepted"`); got != n {
		t.Errorf("%d accepted lines for %d accepted events", got, n)
	}
}

func TestIntake_logs_one_line_per_request_without_secret_or_values(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	h.in.Handle(context.Background(), validRequest())
	bad := validRequest()
	bad.Header.Set("X-Dvrelay-Secret", "wrong-"+secret)
	h.in.Handle(context.Background(), bad)

	out := h.logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"correlationId", "eventId", "entity", "message", "outcome", "status", "durationMs"} {
		if _, ok := first[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, lines[0])
		}
	}
	if first["eventId"] != "evt-1" || first["outcome"] != "accepted" || first["status"] != float64(202) {
		t.Errorf("log line = %s", lines[0])
	}
	for _, leak := range []string{secret, "Top secret deal"} {
		if strings.Contains(out, leak) {
			t.Errorf("logs contain %q", leak)
		}
	}
}

type panickingParser struct{}

func (panickingParser) Parse([]byte, event.Hints) (event.Event, error) {
	panic("index out of range while reading Top secret deal")
}

func TestIntake_answers_a_parser_panic_with_a_bare_500_and_logs_no_value(t *testing.T) {
	logs := &syncBuffer{}
	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{}, panickingParser{}, pub, slog.New(slog.NewJSONHandler(logs, nil)))
	res := in.Handle(context.Background(), validRequest())
	if res.Status != http.StatusInternalServerError {
		t.Fatalf("status = %d", res.Status)
	}
	if p := decodeProblem(t, res); p.Detail != "" || strings.Contains(string(res.Body), "secret") {
		t.Errorf("500 leaks detail: %s", res.Body)
	}
	if !strings.Contains(logs.String(), `"status":500`) || strings.Contains(logs.String(), "Top secret deal") {
		t.Errorf("log = %s", logs.String())
	}
	if len(pub.messages()) != 0 {
		t.Error("published")
	}
}

func TestNew_gives_zero_fields_the_defaults_an_unset_setting_gets(t *testing.T) {
	// explain and the tests build intakes without settings; they must answer as a deployed
	// intake with nothing set does.
	settings, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	in := webhook.New(webhook.Config{}, &fakeParser{}, &recordingPublisher{}, slog.New(slog.DiscardHandler))
	if in.MaxBodyBytes() != settings.MaxBodyBytes || in.SecretHeader() != settings.SecretHeader {
		t.Errorf("zero Config: body limit %d, secret header %q; unset settings: %d, %q",
			in.MaxBodyBytes(), in.SecretHeader(), settings.MaxBodyBytes, settings.SecretHeader)
	}
}
