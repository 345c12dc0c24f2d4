package explain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/explain"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// dataverseFixtures holds captured Dataverse payloads, kept with the event package's tests.
const dataverseFixtures = "../../event/testdata/dataverse"

// setup builds what `handler explain` builds: the default routes, every URL setting and
// Dataverse pointing at one server that must never be called.
type setup struct {
	parser   *event.Parser
	router   *worker.Worker
	requests *atomic.Int64
	url      string
}

func newSetup(t *testing.T, settings map[string]string) *setup {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() {
		srv.Close()
		if n := requests.Load(); n != 0 {
			t.Errorf("the downstream double got %d requests; explain must send nothing", n)
		}
	})
	parser, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"DVRELAY_CREDIT_URL": srv.URL + "/credit?code=function-key-abc",
		"DVRELAY_ERP_URL":    srv.URL + "/erp",
	}
	for k, v := range settings {
		all[k] = v
	}
	lookup := func(k string) (string, bool) { v, ok := all[k]; return v, ok && v != "" }
	w, err := worker.New(worker.Config{RoutesPath: "../../../routes.json"}, explain.Offline(lookup, parser, true), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &setup{parser: parser, router: w, requests: &requests, url: srv.URL}
}

func (s *setup) run(t *testing.T, cfg webhook.Config, body []byte, header http.Header) (*explain.Report, string) {
	t.Helper()
	rep, err := explain.Run(context.Background(), cfg, s.parser, s.router, explain.Request{Body: body, Header: header})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	return rep, out.String()
}

func payloads(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestRun_accepts_every_captured_and_sample_payload_and_explains_its_routing(t *testing.T) {
	files := append(payloads(t, dataverseFixtures), payloads(t, "../../../samples")...)
	if len(files) < 8 {
		t.Fatalf("found %d payloads, want the 7 shared fixtures and the samples: %v", len(files), files)
	}
	s := newSetup(t, nil)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			header := http.Header{"Content-Type": {"application/json"}}
			if filepath.Base(file) == "size-exceeded.json" {
				header.Set("X-Ms-Dynamics-Msg-Size-Exceeded", "true")
			}

			rep, text := s.run(t, webhook.Config{}, body, header)

			if !rep.Accepted() {
				t.Fatalf("status %d, want 202:\n%s", rep.Status, text)
			}
			for _, c := range rep.Checks {
				if c.Verdict != explain.Pass {
					t.Errorf("check %s = %s (%s), want pass", c.Name, c.Verdict, c.Detail)
				}
			}
			var ev event.Event
			if err := json.Unmarshal(rep.Event, &ev); err != nil || ev.EventID != rep.EventID || rep.EventID == "" {
				t.Errorf("canonical event %s does not carry the EventId %q: %v", rep.Event, rep.EventID, err)
			}
			if rep.RoutingErr != nil || rep.Routing.EventID != rep.EventID {
				t.Fatalf("routing = %+v, %v; want the worker's explanation of the same event", rep.Routing, rep.RoutingErr)
			}
			// The catch-all route matches everything that is not the worker's own echo.
			last := rep.Routing.Routes[len(rep.Routing.Routes)-1]
			if last.Name != "audit-log" || !last.Matches {
				t.Errorf("audit-log = %+v, want it to match", last)
			}
			for _, want := range []string{"intake: accepted, 202", "EventId        " + rep.EventID, `"EventId": "` + rep.EventID + `"`, "route audit-log: matches", "Nothing was sent"} {
				if !strings.Contains(text, want) {
					t.Errorf("report does not hold %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestRun_shows_the_credit_route_with_resolved_urls_for_the_opportunity_sample(t *testing.T) {
	s := newSetup(t, map[string]string{"DVRELAY_ERP_URL": ""})
	body, err := os.ReadFile("../../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}

	_, text := s.run(t, webhook.Config{}, body, http.Header{"Content-Type": {"application/json"}})

	for _, want := range []string{
		"route credit-check: matches",
		"step credit-score (http, timeout 10s)",
		"POST " + s.url + "/credit?code=REDACTED (${DVRELAY_CREDIT_URL}) with EventId, CorrelationId, Entity, RecordId, Attributes.estimatedvalue, Attributes.parentaccountid",
		"PATCH opportunity(",
		"new_creditscore = $steps.credit-score.score",
		"step erp-sync (http, timeout 10s)\n      skipped: setting DVRELAY_ERP_URL is not set\n      POST ${DVRELAY_ERP_URL}",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report does not hold %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "function-key-abc") {
		t.Errorf("the report shows the function key:\n%s", text)
	}
}

func TestRun_gives_the_exact_answer_the_intake_would_refuse_with(t *testing.T) {
	plugin, err := os.ReadFile("../../../samples/plugin-event.json")
	if err != nil {
		t.Fatal(err)
	}
	secret := webhook.Config{Secrets: [][]byte{[]byte("s3cret")}}
	tests := []struct {
		name        string
		cfg         webhook.Config
		body        []byte
		header      http.Header
		status      int
		problemType string
		failed      string
		detail      string
		pointer     string // a JSON pointer the problem's errors must name
	}{
		{name: "not JSON", body: []byte(`{"EventName": `), status: 400, problemType: "invalid-payload", failed: "payload",
			detail: "not JSON: it ends before the JSON does (truncated?), at line 1, column 15 (byte 14)"},
		{name: "a stray character", body: []byte("{\"a\": 1,\n \"b\": x}"), status: 400, problemType: "invalid-payload", failed: "payload",
			detail: "invalid character 'x' looking for beginning of value, at line 2, column 7 (byte 15)"},
		{name: "a JSON array", body: []byte(`[1, 2]`), status: 400, problemType: "invalid-payload", failed: "payload"},
		{name: "a field of the wrong type", body: bytes.Replace(plugin, []byte(`["estimatedvalue", "name"]`), []byte(`"estimatedvalue"`), 1),
			status: 400, problemType: "invalid-payload", failed: "payload", pointer: "/ChangedFields"},
		{name: "a RecordId that is not a GUID", body: bytes.Replace(plugin, []byte("c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8"), []byte("not-a-guid"), 1),
			status: 400, problemType: "invalid-payload", failed: "payload", pointer: "/RecordId"},
		{name: "a body over the limit", cfg: webhook.Config{MaxBodyBytes: 100}, body: plugin, status: 413, problemType: "payload-too-large", failed: "size"},
		{name: "not declared as JSON", body: plugin, header: http.Header{"Content-Type": {"text/plain"}}, status: 415, problemType: "unsupported-media-type", failed: "content type",
			detail: "send -H 'Content-Type: application/json'"},
		{name: "the secret header missing", cfg: secret, body: plugin, status: 401, problemType: "unauthorized", failed: "secret",
			detail: "the x-dvrelay-secret header is missing; pass it with -H 'x-dvrelay-secret: <secret>'"},
		{name: "a wrong secret", cfg: secret, body: plugin, header: http.Header{"X-Dvrelay-Secret": {"guess"}}, status: 401, problemType: "unauthorized", failed: "secret",
			detail: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, nil)

			rep, text := s.run(t, tt.cfg, tt.body, tt.header)

			if rep.Accepted() || rep.Status != tt.status {
				t.Fatalf("status %d, want %d:\n%s", rep.Status, tt.status, text)
			}
			var problem struct {
				Type   string `json:"type"`
				Status int    `json:"status"`
				Errors []struct {
					Pointer string `json:"pointer"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rep.Problem, &problem); err != nil {
				t.Fatalf("answer %s is not problem+json: %v", rep.Problem, err)
			}
			if problem.Type != webhook.ProblemTypeBase+tt.problemType || problem.Status != tt.status {
				t.Errorf("problem = %s, want type %s and status %d", rep.Problem, tt.problemType, tt.status)
			}
			if tt.pointer != "" && !strings.Contains(string(rep.Problem), `"`+tt.pointer+`"`) {
				t.Errorf("problem %s does not name %s", rep.Problem, tt.pointer)
			}
			seenFail := false
			for _, c := range rep.Checks {
				switch {
				case c.Name == tt.failed:
					seenFail = true
					if c.Verdict != explain.Fail || !strings.Contains(c.Detail, tt.detail) {
						t.Errorf("check %s = %s (%s), want FAIL with %q", c.Name, c.Verdict, c.Detail, tt.detail)
					}
				case !seenFail && c.Verdict != explain.Pass, seenFail && c.Verdict != explain.NotReached:
					t.Errorf("check %s = %s, want pass before the failure and not reached after it", c.Name, c.Verdict)
				}
			}
			if !strings.Contains(text, "intake: refused") || !strings.Contains(text, `"type": "`+problem.Type+`"`) {
				t.Errorf("report does not show the refusal and its answer:\n%s", text)
			}
			if rep.Event != nil || rep.EventID != "" {
				t.Errorf("a refused payload has an event: %s", rep.Event)
			}
		})
	}
}

func TestRun_passes_the_secret_check_with_the_right_header(t *testing.T) {
	s := newSetup(t, nil)
	body, err := os.ReadFile("../../../samples/plugin-event.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := webhook.Config{Secrets: [][]byte{[]byte("old"), []byte("s3cret")}, SecretHeader: "x-api-secret"}

	rep, text := s.run(t, cfg, body, http.Header{"X-Api-Secret": {"s3cret"}})

	if !rep.Accepted() || !strings.Contains(text, "pass  secret: the x-api-secret header matches") {
		t.Errorf("want accepted with the secret check passed:\n%s", text)
	}
}

func TestOffline_sends_nothing_even_when_a_step_runs(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	defer srv.Close()
	parser, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) { return srv.URL, k == "DVRELAY_CREDIT_URL" || k == "DVRELAY_ERP_URL" }
	w, err := worker.New(worker.Config{RoutesPath: "../../../routes.json", MaxAttempts: 1, Retry: worker.RetryPolicy{QuickAttempts: 1}},
		explain.Offline(lookup, parser, true), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("../../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := parser.Parse(body, event.Hints{})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}

	out := w.Process(context.Background(), queue.Delivery{MessageID: ev.EventID, Body: queued, DeliveryCount: 1})

	if out.Kind == queue.Complete || !strings.Contains(out.Description, "explain sends nothing") {
		t.Errorf("outcome = %+v, want a failure that says explain sends nothing", out)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the server got %d requests, want none", n)
	}
}
