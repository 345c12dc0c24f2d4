package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func explainBody(t *testing.T, w *worker.Worker, ev map[string]any) worker.Explanation {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := w.Explain(body)
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	return ex
}

func TestExplain_shows_matching_routes_and_resolved_targets_and_calls_nothing(t *testing.T) {
	h := newHarness(t)
	delete(h.settings, "DVRELAY_ERP_URL")
	w := h.worker(t, worker.Config{})

	ex := explainBody(t, w, opportunityEvent())

	if ex.EventID != eventID || ex.LoopGuard != "" {
		t.Errorf("event id %q, loop guard %q; want %s and none", ex.EventID, ex.LoopGuard, eventID)
	}
	var matching []string
	for _, r := range ex.Routes {
		if r.Matches {
			matching = append(matching, r.Name)
		}
	}
	if len(matching) != 2 || matching[0] != "credit-check" || matching[1] != "audit-log" || ex.Routes[0].Name != "credit-check" {
		t.Fatalf("routes = %+v, want credit-check and audit-log matching", ex.Routes)
	}
	steps := ex.Routes[0].Steps
	if len(steps) != 4 {
		t.Fatalf("credit-check steps = %+v, want 4", steps)
	}
	score := steps[0]
	if score.Name != "credit-score" || score.Type != "http" || score.Timeout != 10*time.Second || score.Skip != "" {
		t.Errorf("credit-score = %+v, want an http step of 10s that runs", score)
	}
	if !strings.HasPrefix(score.Target, "POST http://127.0.0.1:") || !strings.Contains(score.Target, "/score?code=REDACTED") ||
		!strings.Contains(score.Target, "${DVRELAY_CREDIT_URL}") {
		t.Errorf("credit-score target = %q, want the resolved URL, its key hidden, and the setting", score.Target)
	}
	if strings.Contains(score.Target, "function-key-abc") {
		t.Errorf("target %q shows the function key", score.Target)
	}
	if write := steps[1]; write.Skip != "" || write.Target != "PATCH opportunity("+recordID+") new_creditscore = $steps.credit-score.score" {
		t.Errorf("write-score = %+v, want a PATCH of the event's record from the score", write)
	}
	if erp := steps[2]; erp.Skip != "setting DVRELAY_ERP_URL is not set" || erp.Target != "POST ${DVRELAY_ERP_URL}" {
		t.Errorf("erp-sync = %+v, want skipped for DVRELAY_ERP_URL, shown as declared", erp)
	}
	if n := len(h.credit.calls()) + len(h.erp.calls()) + len(h.dv.calls()); n != 0 {
		t.Errorf("downstream calls = %d, want none", n)
	}
}

func TestExplain_says_why_a_route_or_a_step_would_not_run(t *testing.T) {
	lookupRoutes := `{"routes":[{"name":"account-touch","match":{"entity":"opportunity"},"steps":[
		{"name":"write-account","type":"dataverse-update","record":{"lookup":"parentaccountid"},
		 "set":{"new_lastopportunityid":"$event.RecordId"}}]}]}`
	tests := []struct {
		name   string
		routes string
		cfg    worker.Config
		ev     map[string]any
		check  func(t *testing.T, ex worker.Explanation)
	}{
		{
			name: "estimated value did not change",
			ev:   opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"name"} }),
			check: func(t *testing.T, ex worker.Explanation) {
				if r := ex.Routes[0]; r.Matches || r.Mismatch != "none of estimatedvalue changed (changed: name)" {
					t.Errorf("credit-check = %+v, want not matched because estimatedvalue did not change", r)
				}
			},
		},
		{
			name: "another entity",
			ev: opportunityEvent(func(ev map[string]any) {
				ev["Entity"], ev["EventName"] = "contact", "ContactUpdated"
			}),
			check: func(t *testing.T, ex worker.Explanation) {
				if r := ex.Routes[0]; r.Matches || r.Mismatch != `the entity is "contact", the route wants "opportunity"` {
					t.Errorf("credit-check = %+v, want not matched on the entity", r)
				}
			},
		},
		{
			name: "a Delete",
			ev:   opportunityEvent(func(ev map[string]any) { ev["Message"], ev["EventName"] = "Delete", "OpportunityDeleted" }),
			check: func(t *testing.T, ex worker.Explanation) {
				if r := ex.Routes[0]; r.Matches || r.Mismatch != `the message is "Delete", the route wants Create or Update` {
					t.Errorf("credit-check = %+v, want not matched on the message", r)
				}
			},
		},
		{
			name: "triggered by the worker's own user",
			cfg:  worker.Config{IgnoreUserIDs: []string{userID}},
			ev:   opportunityEvent(),
			check: func(t *testing.T, ex worker.Explanation) {
				if ex.LoopGuard != "triggered by an ignored user" {
					t.Errorf("loop guard = %q, want the ignored user", ex.LoopGuard)
				}
			},
		},
		{
			name: "only the column the worker writes changed",
			ev:   opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"new_creditscore"} }),
			check: func(t *testing.T, ex worker.Explanation) {
				if ex.LoopGuard != "only columns the worker writes changed" {
					t.Errorf("loop guard = %q, want the echo of the worker's own write", ex.LoopGuard)
				}
			},
		},
		{
			name:   "the lookup naming the record to update is empty",
			routes: lookupRoutes,
			ev:     opportunityEvent(func(ev map[string]any) { delete(ev["Attributes"].(map[string]any), "parentaccountid") }),
			check: func(t *testing.T, ex worker.Explanation) {
				if s := ex.Routes[0].Steps[0]; !strings.HasPrefix(s.Skip, "lookup parentaccountid is empty in this event") {
					t.Errorf("write-account = %+v, want skipped for the empty lookup", s)
				}
			},
		},
		{
			name:   "the lookup names another record",
			routes: lookupRoutes,
			ev:     opportunityEvent(),
			check: func(t *testing.T, ex worker.Explanation) {
				want := "PATCH account(22222222-3333-4444-5555-666666666666) new_lastopportunityid = $event.RecordId"
				if s := ex.Routes[0].Steps[0]; s.Skip != "" || s.Target != want {
					t.Errorf("write-account = %+v, want target %q", s, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			cfg := tt.cfg
			if tt.routes != "" {
				cfg.RoutesPath = writeRoutes(t, tt.routes)
			}
			w := h.worker(t, cfg)

			ex := explainBody(t, w, tt.ev)

			t.Logf("%+v", ex)
			tt.check(t, ex)
		})
	}
}

func TestExplain_refuses_a_body_Process_would_dead_letter_as_invalid(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})
	if _, err := w.Explain([]byte(`{"EventId": 1}`)); err == nil || !strings.Contains(err.Error(), queue.ReasonInvalidMessage) {
		t.Errorf("Explain of an invalid body: %v, want an InvalidMessage error", err)
	}
}
