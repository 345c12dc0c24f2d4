package worker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// miEndpoint is a double of the Functions managed identity endpoint (IDENTITY_ENDPOINT).
func miEndpoint(t *testing.T, token string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "id-header" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"access_token": token,
			"expires_on":   strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
			"resource":     r.URL.Query().Get("resource"),
			"token_type":   "Bearer",
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Not parallel: the managed identity endpoint is found through process environment variables.
func TestWorker_runs_the_default_route_for_an_opportunity_whose_estimated_value_changed(t *testing.T) {
	h := newHarness(t)
	mi := miEndpoint(t, "mi-token-xyz")
	t.Setenv("IDENTITY_ENDPOINT", mi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "id-header")
	cred, err := dataverse.NewCredential(dataverse.Identity{IdentityEndpoint: os.Getenv("IDENTITY_ENDPOINT")}, "")
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	h.cred = cred
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %v (%s), want complete", out.Kind, out.Summary)
	}
	credit := h.credit.calls()
	if len(credit) != 1 {
		t.Fatalf("credit calls = %d, want 1", len(credit))
	}
	for k, want := range map[string]string{"Idempotency-Key": eventID, "X-Correlation-ID": corrID, "Content-Type": "application/json"} {
		if got := credit[0].header.Get(k); got != want {
			t.Errorf("credit %s = %q, want %q", k, got, want)
		}
	}
	var sent map[string]any
	if err := json.Unmarshal(credit[0].body, &sent); err != nil {
		t.Fatalf("credit body: %v", err)
	}
	attrs, _ := sent["Attributes"].(map[string]any)
	if sent["RecordId"] != recordID || attrs["estimatedvalue"] != 15000.5 {
		t.Errorf("credit body = %s, want the RecordId and estimatedvalue projection", credit[0].body)
	}
	if _, leaked := attrs["name"]; leaked {
		t.Errorf("credit body = %s, want only the selected attributes", credit[0].body)
	}

	patches := h.dv.calls()
	if len(patches) != 1 {
		t.Fatalf("PATCH calls = %d, want 1", len(patches))
	}
	p := patches[0]
	if want := "/api/data/v9.2/opportunities(" + recordID + ")"; p.path != want {
		t.Errorf("PATCH path = %q, want %q", p.path, want)
	}
	for k, want := range map[string]string{"Authorization": "Bearer mi-token-xyz", "If-Match": "*", "Idempotency-Key": eventID, "X-Correlation-ID": corrID} {
		if got := p.header.Get(k); got != want {
			t.Errorf("PATCH %s = %q, want %q", k, got, want)
		}
	}
	if got := strings.TrimSpace(string(p.body)); got != `{"new_creditscore":712}` {
		t.Errorf("PATCH body = %s, want the score written to new_creditscore", got)
	}

	erp := h.erp.calls()
	if len(erp) != 1 || erp[0].header.Get("Idempotency-Key") != eventID {
		t.Fatalf("ERP calls = %d (%v), want 1 carrying the event id", len(erp), erp)
	}
	var full map[string]any
	_ = json.Unmarshal(erp[0].body, &full)
	if full["EventId"] != eventID || full["Entity"] != "opportunity" {
		t.Errorf("ERP body = %s, want the canonical event", erp[0].body)
	}

	var steps []string
	for _, l := range h.logs.lines(t) {
		if l["msg"] != "step" {
			continue
		}
		for _, k := range []string{"correlationId", "eventId", "route", "step", "attempt", "status", "durationMs"} {
			if _, ok := l[k]; !ok {
				t.Errorf("step log line %v lacks %q", l, k)
			}
		}
		steps = append(steps, l["route"].(string)+"/"+l["step"].(string)+":"+l["status"].(string))
	}
	want := []string{"credit-check/credit-score:ok", "credit-check/write-score:ok", "credit-check/erp-sync:ok", "credit-check/log:ok", "audit-log/log:ok"}
	if !slices.Equal(steps, want) {
		t.Errorf("step log lines = %v, want %v", steps, want)
	}
	if logs := h.logs.String(); strings.Contains(logs, secretName) || strings.Contains(logs, "15000") || strings.Contains(logs, "function-key-abc") || strings.Contains(logs, "mi-token-xyz") {
		t.Errorf("logs carry an attribute value, a function key or a token:\n%s", logs)
	}
}

func TestWorker_recovers_from_two_failures_with_one_effect_per_event(t *testing.T) {
	h := newHarness(t)
	h.credit.script = func(n int) reply {
		if n <= 2 {
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{status: 200, body: `{"score": 640}`}
	}
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %v (%s), want complete after quick retries", out.Kind, out.Summary)
	}
	calls := h.credit.calls()
	if len(calls) != 3 {
		t.Fatalf("credit calls = %d, want 3", len(calls))
	}
	for _, c := range calls {
		if c.header.Get("Idempotency-Key") != eventID {
			t.Errorf("retry carried Idempotency-Key %q, want %q", c.header.Get("Idempotency-Key"), eventID)
		}
	}
	if len(h.credit.applied) != 1 || h.credit.applied[eventID] != 1 {
		t.Errorf("credit effects = %v, want exactly one for the event", h.credit.applied)
	}
	if n := len(h.dv.calls()); n != 1 {
		t.Errorf("PATCH calls = %d, want 1", n)
	}
}

func TestWorker_a_scheduled_retry_repeats_earlier_steps_under_the_same_idempotency_key(t *testing.T) {
	h := newHarness(t)
	erpDown := true
	h.erp.script = func(int) reply {
		if erpDown {
			return reply{status: http.StatusBadGateway}
		}
		return reply{status: 200, body: `{}`}
	}
	w := h.worker(t, worker.Config{})

	first := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
	if first.Kind != queue.RetryLater || first.Step != "erp-sync" || first.Attempt != 2 {
		t.Fatalf("first outcome = %+v, want retry-later of erp-sync as attempt 2", first)
	}
	erpDown = false
	second := w.Process(context.Background(), delivery(t, opportunityEvent(), first.Attempt))
	if second.Kind != queue.Complete {
		t.Fatalf("second outcome = %v (%s), want complete", second.Kind, second.Summary)
	}
	// The credit step ran in both attempts, but the idempotent API applied it once.
	if n := len(h.credit.calls()); n != 2 {
		t.Errorf("credit calls = %d, want 2 (one per attempt)", n)
	}
	if len(h.credit.applied) != 1 {
		t.Errorf("credit effects keyed by Idempotency-Key = %v, want one key", h.credit.applied)
	}
	if len(h.erp.applied) != 1 || h.erp.applied[eventID] != 1 {
		t.Errorf("ERP effects = %v, want one", h.erp.applied)
	}
}

func TestWorker_honours_Retry_After_on_429(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		step  string
	}{
		{"credit API", func(h *harness) {
			h.credit.script = func(int) reply { return reply{status: http.StatusTooManyRequests, retryAfter: "120"} }
		}, "credit-score"},
		{"Dataverse service protection", func(h *harness) {
			h.dv.patchReply = func(int) reply {
				return reply{status: http.StatusTooManyRequests, retryAfter: "120", body: `{"error":{"code":"0x80072322","message":"limit"}}`}
			}
		}, "write-score"},
		{"HTTP date form", func(h *harness) {
			at := h.now.Add(150 * time.Second).Format(http.TimeFormat)
			h.erp.script = func(int) reply { return reply{status: http.StatusServiceUnavailable, retryAfter: at} }
		}, "erp-sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.RetryLater || out.Step != tt.step {
				t.Fatalf("outcome = %+v, want retry-later at step %s", out, tt.step)
			}
			if min := h.now.Add(119 * time.Second); out.RetryAt.Before(min) {
				t.Errorf("RetryAt = %s, want at least %s (Retry-After)", out.RetryAt, min)
			}
		})
	}
}

func TestWorker_bounds_an_absurd_Retry_After_by_the_longest_back_off(t *testing.T) {
	tests := []struct{ name, retryAfter string }{
		{"a week in seconds", "604800"},
		{"a date decades away", "Fri, 31 Dec 2100 23:59:59 GMT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.credit.script = func(int) reply { return reply{status: http.StatusServiceUnavailable, retryAfter: tt.retryAfter} }
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.RetryLater {
				t.Fatalf("outcome = %+v, want retry-later", out)
			}
			// A downstream must not be able to park an event for longer than the policy's own
			// longest delay (LaterMax plus jitter): a message scheduled decades away is lost.
			if latest := h.now.Add(worker.DefaultRetryPolicy().LaterMax * 6 / 5); out.RetryAt.After(latest) {
				t.Errorf("RetryAt = %s, want no later than %s", out.RetryAt, latest)
			}
		})
	}
}

func TestWorker_does_not_wait_in_process_for_a_long_Retry_After(t *testing.T) {
	h := newHarness(t)
	h.credit.script = func(int) reply { return reply{status: http.StatusTooManyRequests, retryAfter: "120"} }
	w := h.worker(t, worker.Config{})

	w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if n := len(h.credit.calls()); n != 1 {
		t.Errorf("credit calls = %d, want 1: a 2-minute Retry-After goes to the schedule, not a quick retry", n)
	}
}

func TestWorker_schedules_retries_with_back_off_then_dead_letters(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(int) reply { return reply{status: http.StatusInternalServerError} }
	w := h.worker(t, worker.Config{MaxAttempts: 4})

	var delays []time.Duration
	for attempt := 1; attempt <= 4; attempt++ {
		out := w.Process(context.Background(), delivery(t, opportunityEvent(), attempt))
		if attempt < 4 {
			if out.Kind != queue.RetryLater || out.Attempt != attempt+1 {
				t.Fatalf("attempt %d outcome = %+v, want retry-later as attempt %d", attempt, out, attempt+1)
			}
			delays = append(delays, out.RetryAt.Sub(h.now))
			continue
		}
		if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonMaxAttemptsExceeded || out.Step != "erp-sync" {
			t.Fatalf("last attempt outcome = %+v, want dead-letter MaxAttemptsExceeded at erp-sync", out)
		}
		if !strings.Contains(out.Description, "500") || !strings.Contains(out.Description, "attempt 4 of 4") {
			t.Errorf("description = %q, want the attempt count and the last status", out.Description)
		}
	}
	if want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute}; !slices.Equal(delays, want) {
		t.Errorf("retry delays = %v, want %v", delays, want)
	}
	// Three quick tries per attempt.
	if n := len(h.erp.calls()); n != 12 {
		t.Errorf("ERP calls = %d, want 12", n)
	}
}

func TestWorker_dead_letters_permanent_failures_at_once(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		step  string
	}{
		{"credit API answers 400", func(h *harness) {
			h.credit.script = func(int) reply { return reply{status: http.StatusBadRequest, body: `{"error":"bad"}`} }
		}, "credit-score"},
		{"credit API answers without a numeric score", func(h *harness) {
			h.credit.script = func(int) reply { return reply{status: 200, body: `{"score":"high"}`} }
		}, "credit-score"},
		{"credit API answers with something that is not JSON", func(h *harness) {
			h.credit.script = func(int) reply { return reply{status: 200, body: `<html>`} }
		}, "credit-score"},
		{"record deleted (404 on PATCH)", func(h *harness) {
			h.dv.patchReply = func(int) reply {
				return reply{status: http.StatusNotFound, body: `{"error":{"code":"0x80040217","message":"opportunity With Id = x Does Not Exist"}}`}
			}
		}, "write-score"},
		{"credit API redirects (a POST is not followed to a GET)", func(h *harness) {
			h.credit.script = func(int) reply { return reply{status: http.StatusFound} }
		}, "credit-score"},
		{"ERP answers 501", func(h *harness) {
			h.erp.script = func(int) reply { return reply{status: http.StatusNotImplemented} }
		}, "erp-sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonPermanentFailure || out.Step != tt.step {
				t.Fatalf("outcome = %+v, want dead-letter PermanentFailure at %s", out, tt.step)
			}
			total := len(h.credit.calls()) + len(h.dv.calls()) + len(h.erp.calls())
			if want := map[string]int{"credit-score": 1, "write-score": 2, "erp-sync": 3}[tt.step]; total != want {
				t.Errorf("downstream calls = %d, want %d (no retry of a permanent failure)", total, want)
			}
		})
	}
}

func TestWorker_dead_letters_a_poison_body_without_calling_anything(t *testing.T) {
	tests := map[string]string{
		"not JSON":         `{"EventId": `,
		"a JSON array":     `[1,2,3]`,
		"missing EventId":  `{"SchemaVersion":"1.0","CorrelationId":"c","EventName":"X","RecordId":"` + recordID + `","TriggeredBy":"u","Timestamp":"2026-11-25T05:00:00Z","Source":"dataverse-webhook"}`,
		"RecordId no GUID": strings.Replace(mustJSON(t, opportunityEvent()), recordID, "not-a-guid", 1),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{})
			d := delivery(t, opportunityEvent(), 1)
			d.Body = []byte(body)

			out := w.Process(context.Background(), d)

			if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonInvalidMessage {
				t.Fatalf("outcome = %+v, want dead-letter InvalidMessage", out)
			}
			if n := len(h.credit.calls()) + len(h.dv.calls()) + len(h.erp.calls()); n != 0 {
				t.Errorf("downstream calls = %d, want none", n)
			}
		})
	}
}

func TestWorker_loop_guard_skips_the_workers_own_echoes(t *testing.T) {
	tests := []struct {
		name     string
		adjust   func(map[string]any)
		wantWork bool
	}{
		{"triggered by the worker's application user", func(ev map[string]any) { ev["TriggeredBy"] = strings.ToUpper(workerID) }, false},
		{"only the score column changed", func(ev map[string]any) { ev["ChangedFields"] = []string{"new_creditscore"} }, false},
		{"only a configured extra written column changed", func(ev map[string]any) { ev["ChangedFields"] = []string{"new_erpsyncedon", "new_creditscore"} }, false},
		{"the score and the estimated value changed", func(ev map[string]any) { ev["ChangedFields"] = []string{"new_creditscore", "estimatedvalue"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{IgnoreUserIDs: []string{workerID}, WrittenColumns: []string{"new_erpsyncedon"}})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(tt.adjust), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			if worked := len(h.credit.calls()) > 0; worked != tt.wantWork {
				t.Errorf("credit called = %v, want %v (%s)", worked, tt.wantWork, out.Summary)
			}
		})
	}
}

func TestWorker_runs_only_the_catch_all_route_when_estimated_value_did_not_change(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"name"} }), 1))

	if out.Kind != queue.Complete || !strings.Contains(out.Summary, "audit-log") || strings.Contains(out.Summary, "credit-check") {
		t.Fatalf("outcome = %+v, want complete through audit-log only", out)
	}
	if n := len(h.credit.calls()); n != 0 {
		t.Errorf("credit calls = %d, want 0", n)
	}
}

func TestWorker_skips_steps_whose_settings_are_unset_with_one_warning(t *testing.T) {
	h := newHarness(t)
	delete(h.settings, "DVRELAY_CREDIT_URL")
	w := h.worker(t, worker.Config{})

	var warnings []string
	for _, l := range h.logs.lines(t) {
		if l["level"] == "WARN" {
			warnings = append(warnings, l["detail"].(string))
		}
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "DVRELAY_CREDIT_URL") || !strings.Contains(warnings[1], `"write-score"`) {
		t.Fatalf("start-up warnings = %q, want one for credit-score naming DVRELAY_CREDIT_URL and one for write-score, which uses it", warnings)
	}

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	if len(h.dv.calls()) != 0 || len(h.erp.calls()) != 1 {
		t.Errorf("PATCH calls = %d, ERP calls = %d; want 0 and 1", len(h.dv.calls()), len(h.erp.calls()))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A short Retry-After is waited out in process, as Dataverse's guidance asks, instead of
// costing the event the schedule's 30 s and more.
func TestWorker_waits_out_a_short_Retry_After_in_process_then_completes(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		calls func(h *harness) int
	}{
		{"credit API 429", func(h *harness) {
			h.credit.script = func(n int) reply {
				if n == 1 {
					return reply{status: http.StatusTooManyRequests, retryAfter: "3"}
				}
				return reply{status: http.StatusOK, body: `{"score":712}`}
			}
		}, func(h *harness) int { return len(h.credit.calls()) }},
		{"ERP 503", func(h *harness) {
			h.erp.script = func(n int) reply {
				if n == 1 {
					return reply{status: http.StatusServiceUnavailable, retryAfter: "3"}
				}
				return reply{status: http.StatusOK, body: `{}`}
			}
		}, func(h *harness) int { return len(h.erp.calls()) }},
		{"Dataverse service protection", func(h *harness) {
			h.dv.patchReply = func(n int) reply {
				if n == 1 {
					return reply{status: http.StatusTooManyRequests, retryAfter: "3", body: `{"error":{"code":"0x80072322","message":"limit"}}`}
				}
				return reply{status: http.StatusNoContent}
			}
		}, func(h *harness) int { return len(h.dv.calls()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tt.setup(h)
			w := h.worker(t, worker.Config{Retry: worker.DefaultRetryPolicy()})

			start := time.Now()
			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete after waiting 3 s in process", out)
			}
			if n := tt.calls(h); n != 2 {
				t.Errorf("calls = %d, want 2", n)
			}
			if took := time.Since(start); took < 3*time.Second {
				t.Errorf("took %s, want at least the 3 s Retry-After asked for", took)
			}
		})
	}
}
