package httpintake_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
)

const (
	secret      = "webhook-secret-42"
	functionKey = "fn-key-must-not-leak-8f3a"
	eventBody   = `{"EventId":"evt-9","EventName":"AccountCreated","Entity":"account","RecordId":"r-1"}`
)

// tinyParser accepts any JSON object with an EventId, like a very forgiving *event.Parser.
type tinyParser struct{}

func (tinyParser) Parse(body []byte, _ event.Hints) (event.Event, error) {
	var ev event.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return event.Event{}, fmt.Errorf("tiny parser: %w", event.ErrMalformed)
	}
	if ev.EventID == "" {
		return event.Event{}, &event.ValidationError{Kind: "PluginEvent", Problems: []event.FieldProblem{{Pointer: "/EventId", Detail: "is required"}}}
	}
	return ev, nil
}

type recordingPublisher struct {
	mu  sync.Mutex
	got []*queue.Message
	err error
}

func (p *recordingPublisher) Publish(_ context.Context, m *queue.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.got = append(p.got, m)
	return nil
}

func (p *recordingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type server struct {
	*httptest.Server
	pub  *recordingPublisher
	logs *lockedBuffer
}

// newServer mounts both forms the way the handler binary does.
func newServer(t *testing.T, pubErr error) *server {
	t.Helper()
	s := &server{pub: &recordingPublisher{err: pubErr}, logs: &lockedBuffer{}}
	log := slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	in := webhook.New(webhook.Config{MaxBodyBytes: 4096, Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, s.pub, log)
	mux := http.NewServeMux()
	mux.Handle("/api/dataverse/webhook", httpintake.Forwarded(in, 0))
	mux.Handle("/DataverseWebhook", httpintake.Envelope(in, "req", log))
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *server) assertNoKeyLogged(t *testing.T) {
	t.Helper()
	if out := s.logs.String(); strings.Contains(out, functionKey) || strings.Contains(out, secret) {
		t.Errorf("logs leak a key: %s", out)
	}
}

// forwardedRequest is built like the host's forwarded request (host-fixtures/http-forwarded-request.txt).
func forwardedRequest(t *testing.T, method, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "/api/dataverse/webhook?code="+functionKey, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1037.0")
	req.Header.Set("X-Azure-Functions-InvocationId", "3b2f8c1e-7d4a-4b9e-a1c2-d3e4f5a6b7c8")
	req.Header.Set("x-functions-key", functionKey)
	req.Header.Set("x-ms-correlation-request-id", "7e0d1c2b-aaaa-4bbb-8ccc-0123456789ab")
	req.Header.Set("X-Dvrelay-Secret", secret)
	return req
}

func (s *server) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	u := s.URL + req.URL.String()
	out, err := http.NewRequest(req.Method, u, req.Body)
	if err != nil {
		t.Fatal(err)
	}
	out.Header = req.Header
	out.ContentLength = req.ContentLength
	res, err := s.Client().Do(out)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func TestForwarded_accepts_a_webhook_with_202(t *testing.T) {
	s := newServer(t, nil)
	res, body := s.do(t, forwardedRequest(t, http.MethodPost, eventBody))
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := res.Header.Get("X-Correlation-ID"); got != "7e0d1c2b-aaaa-4bbb-8ccc-0123456789ab" {
		t.Errorf("X-Correlation-ID = %q", got)
	}
	if !strings.Contains(string(body), `"eventId":"evt-9"`) || s.pub.count() != 1 {
		t.Errorf("body %s, published %d", body, s.pub.count())
	}
	s.assertNoKeyLogged(t)
}

func TestForwarded_maps_bad_requests_to_problems(t *testing.T) {
	big := `{"EventId":"evt-9","pad":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		status  int
		problem string
	}{
		{"GET is not allowed", func(t *testing.T) *http.Request { return forwardedRequest(t, http.MethodGet, "") }, 405, "method-not-allowed"},
		{"declared body over the limit", func(t *testing.T) *http.Request { return forwardedRequest(t, http.MethodPost, big) }, 413, "payload-too-large"},
		{"chunked body over the limit", func(t *testing.T) *http.Request {
			r := forwardedRequest(t, http.MethodPost, "")
			r.Body = io.NopCloser(strings.NewReader(big))
			r.ContentLength = -1
			return r
		}, 413, "payload-too-large"},
		{"wrong secret", func(t *testing.T) *http.Request {
			r := forwardedRequest(t, http.MethodPost, eventBody)
			r.Header.Set("X-Dvrelay-Secret", "nope")
			return r
		}, 401, "unauthorized"},
		{"XML", func(t *testing.T) *http.Request {
			r := forwardedRequest(t, http.MethodPost, "<x/>")
			r.Header.Set("Content-Type", "application/xml")
			return r
		}, 415, "unsupported-media-type"},
		{"validation failure", func(t *testing.T) *http.Request { return forwardedRequest(t, http.MethodPost, `{"EventName":"x"}`) }, 400, "invalid-payload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, nil)
			res, body := s.do(t, tc.req(t))
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tc.status, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var p struct{ Type string }
			if err := json.Unmarshal(body, &p); err != nil || p.Type != webhook.ProblemTypeBase+tc.problem {
				t.Errorf("problem %s (%v)", body, err)
			}
			if s.pub.count() != 0 {
				t.Error("a rejected request was published")
			}
			s.assertNoKeyLogged(t)
		})
	}
}

// invocation builds the host's HTTP trigger envelope like host-fixtures/http-invocation.json:
// headers as arrays, the function key in Url and Query, Body as a string or missing.
func invocation(t *testing.T, body *string, headers map[string][]string) *http.Request {
	t.Helper()
	h := map[string][]string{
		"Content-Type":                {"application/json; charset=utf-8"},
		"Host":                        {"contoso-fn.azurewebsites.net"},
		"x-functions-key":             {functionKey},
		"x-ms-correlation-request-id": {"corr-env-1"},
		"X-Dvrelay-Secret":            {secret},
	}
	if body != nil {
		h["Content-Length"] = []string{fmt.Sprint(len(*body))}
	}
	for k, v := range headers {
		h[k] = v
	}
	req := map[string]any{
		"Url":     "https://contoso-fn.azurewebsites.net/api/dataverse/webhook?code=" + functionKey,
		"Method":  "POST",
		"Query":   map[string]string{"code": functionKey},
		"Headers": h,
		"Params":  map[string]string{},
	}
	if body != nil {
		req["Body"] = *body
	}
	env, err := json.Marshal(map[string]any{
		"Data":     map[string]any{"req": req},
		"Metadata": map[string]any{"query": map[string]string{"code": functionKey}, "sys": map[string]string{"MethodName": "DataverseWebhook"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodPost, "/DataverseWebhook", bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	r.Header.Set("X-Azure-Functions-InvocationId", "3b2f8c1e-7d4a-4b9e-a1c2-d3e4f5a6b7c8")
	return r
}

type envelopeResult struct {
	Outputs struct {
		Res struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Body       string            `json:"body"`
		} `json:"res"`
	} `json:"Outputs"`
	Logs        []string        `json:"Logs"`
	ReturnValue json.RawMessage `json:"ReturnValue"`
}

func decodeEnvelope(t *testing.T, res *http.Response, body []byte) envelopeResult {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("host got status %d, want 200; body %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("host got Content-Type %q, which fails the invocation", ct)
	}
	var e envelopeResult
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("envelope %s: %v", body, err)
	}
	if string(e.ReturnValue) != "null" {
		t.Errorf("ReturnValue = %s", e.ReturnValue)
	}
	return e
}

func ptr(s string) *string { return &s }

func TestEnvelope_answers_the_host_with_the_intake_result_in_Outputs_res(t *testing.T) {
	s := newServer(t, nil)
	res, body := s.do(t, invocation(t, ptr(eventBody), nil))
	e := decodeEnvelope(t, res, body)
	out := e.Outputs.Res
	if out.StatusCode != http.StatusAccepted {
		t.Fatalf("Outputs.res.statusCode = %d, body %s", out.StatusCode, out.Body)
	}
	if out.Headers["Content-Type"] != "application/json" || out.Headers["X-Correlation-Id"] != "corr-env-1" {
		t.Errorf("headers = %v", out.Headers)
	}
	var acc map[string]string
	if err := json.Unmarshal([]byte(out.Body), &acc); err != nil || acc["eventId"] != "evt-9" || acc["correlationId"] != "corr-env-1" {
		t.Errorf("body %q (%v)", out.Body, err)
	}
	if len(e.Logs) != 1 || !strings.Contains(e.Logs[0], "202") {
		t.Errorf("Logs = %v", e.Logs)
	}
	if s.pub.count() != 1 {
		t.Errorf("published %d", s.pub.count())
	}
	if strings.Contains(string(body), functionKey) {
		t.Error("the answer echoes the function key")
	}
	s.assertNoKeyLogged(t)
}

func TestEnvelope_carries_every_rejection_inside_a_200(t *testing.T) {
	cases := []struct {
		name       string
		body       *string
		headers    map[string][]string
		pubErr     error
		wantStatus int
		wantHeader string
	}{
		{"body missing (no Content-Length)", nil, nil, nil, 400, ""},
		{"wrong secret", ptr(eventBody), map[string][]string{"X-Dvrelay-Secret": {"wrong"}}, nil, 401, ""},
		{"no secret", ptr(eventBody), map[string][]string{"X-Dvrelay-Secret": {}}, nil, 401, ""},
		{"body over the limit", ptr(`{"EventId":"e","pad":"` + strings.Repeat("y", 5000) + `"}`), nil, nil, 413, ""},
		{"broker down", ptr(eventBody), nil, errors.New("broker unreachable"), 503, "Retry-After"},
		{"original method was PUT", ptr(eventBody), nil, nil, 405, "Allow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.pubErr)
			req := invocation(t, tc.body, tc.headers)
			if tc.wantStatus == 405 {
				var env map[string]map[string]map[string]any
				raw, _ := io.ReadAll(req.Body)
				_ = json.Unmarshal(raw, &env)
				env["Data"]["req"]["Method"] = "PUT"
				raw, _ = json.Marshal(env)
				req.Body = io.NopCloser(bytes.NewReader(raw))
				req.ContentLength = int64(len(raw))
			}
			res, body := s.do(t, req)
			out := decodeEnvelope(t, res, body).Outputs.Res
			if out.StatusCode != tc.wantStatus {
				t.Fatalf("statusCode = %d, want %d; body %s", out.StatusCode, tc.wantStatus, out.Body)
			}
			if out.Headers["Content-Type"] != "application/problem+json" {
				t.Errorf("headers = %v", out.Headers)
			}
			if tc.wantHeader != "" && out.Headers[tc.wantHeader] == "" {
				t.Errorf("missing %s in %v", tc.wantHeader, out.Headers)
			}
			if s.pub.count() != 0 {
				t.Error("a rejected request was published")
			}
			s.assertNoKeyLogged(t)
		})
	}
}

func TestEnvelope_fails_the_invocation_when_the_host_sends_garbage(t *testing.T) {
	s := newServer(t, nil)
	req, _ := http.NewRequest(http.MethodPost, "/DataverseWebhook", strings.NewReader(`{"Data":{"req":"not an object"}}`))
	res, _ := s.do(t, req)
	if res.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500 so the host fails the invocation", res.StatusCode)
	}
	if !strings.Contains(s.logs.String(), "invocation failed") {
		t.Errorf("the failure was not logged: %s", s.logs.String())
	}
}

// TestForwarded_serves_the_host_fixture_request reads the raw request the host forwards
// (host-fixtures/http-forwarded-request.txt: original path with routePrefix, ?code=, host
// headers) and checks it reaches the intake whole: a GitHub body is no Dataverse event, so the
// intake must answer 400 listing the missing field, not 401/404/415.
func TestForwarded_serves_the_host_fixture_request(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "http-forwarded-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "# The handler answers") {
			break // the rest of the file is the response
		}
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(strings.Join(lines, "\r\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.Query().Get("code") == "" || req.ContentLength != 84 {
		t.Fatalf("fixture not read as expected: %v, %d", req.URL, req.ContentLength)
	}
	req.Header.Set("X-Dvrelay-Secret", secret)

	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, pub, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	httpintake.Forwarded(in, 0).ServeHTTP(rec, req)

	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d, body %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"pointer":"/EventId"`) {
		t.Errorf("body = %s", rec.Body)
	}
	if pub.count() != 0 {
		t.Error("published")
	}
}
