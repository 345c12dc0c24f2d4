package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func TestWorker_updates_the_related_record_named_by_a_lookup(t *testing.T) {
	routes := `{"routes":[{"name":"account-score","steps":[
		{"name":"credit-score","type":"http","url":"${DVRELAY_CREDIT_URL}","expect":{"score":"number"}},
		{"name":"write-account","type":"dataverse-update","record":{"lookup":"parentaccountid"},
		 "set":{"new_lastscore":"$steps.credit-score.score","new_lastopportunityid":"$event.RecordId","new_note":"$event.Attributes.description"}}]}]}`
	tests := []struct {
		name      string
		adjust    func(map[string]any)
		wantPatch string
	}{
		{"lookup present", nil, `/api/data/v9.2/accounts(22222222-3333-4444-5555-666666666666)`},
		{"lookup absent from the event", func(ev map[string]any) { delete(ev["Attributes"].(map[string]any), "parentaccountid") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})
			var adjust []func(map[string]any)
			if tt.adjust != nil {
				adjust = append(adjust, tt.adjust)
			}

			out := w.Process(context.Background(), delivery(t, opportunityEvent(adjust...), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			patches := h.dv.calls()
			if tt.wantPatch == "" {
				if len(patches) != 0 {
					t.Fatalf("PATCH sent to %s, want none when the lookup is empty", patches[0].path)
				}
				return
			}
			if len(patches) != 1 || patches[0].path != tt.wantPatch {
				t.Fatalf("PATCH calls = %v, want one to %s", patches, tt.wantPatch)
			}
			// description is not in the event (unchanged column of an Update): it is left alone.
			if got, want := string(patches[0].body), `{"new_lastopportunityid":"`+recordID+`","new_lastscore":712}`; got != want {
				t.Errorf("PATCH body = %s, want %s", got, want)
			}
		})
	}
}

func TestWorker_unreachable_downstream_is_retried_later_without_leaking_the_url(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	h.settings["DVRELAY_CREDIT_URL"] = "http://" + closed + "/score?code=function-key-abc"
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.RetryLater || out.Step != "credit-score" {
		t.Fatalf("outcome = %+v, want retry-later at credit-score", out)
	}
	for _, s := range []string{out.Description, out.Summary, h.logs.String()} {
		if strings.Contains(s, "function-key-abc") {
			t.Errorf("the function key leaked: %s", s)
		}
	}
	if !strings.Contains(out.Description, "${DVRELAY_CREDIT_URL}") {
		t.Errorf("description %q does not name the setting", out.Description)
	}
}

// BenchmarkProcess measures one delivery through the default routes: the full credit route
// (three HTTP round trips to local doubles) and the catch-all log route only.
func BenchmarkProcess(b *testing.B) {
	cases := []struct {
		name   string
		adjust func(map[string]any)
	}{
		{"default_route_with_3_http_calls", nil},
		{"catch_all_log_only", func(ev map[string]any) { ev["ChangedFields"] = []string{"name"} }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b)
			dv, err := dataverse.NewClient(h.dvURL, h.cred, nil)
			if err != nil {
				b.Fatal(err)
			}
			w, err := worker.New(worker.Config{RoutesPath: "../../routes.json"}, worker.Deps{
				Settings:  func(k string) (string, bool) { v, ok := h.settings[k]; return v, ok },
				Dataverse: dv,
				Decoder:   newDecoder(b),
			}, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			var adjust []func(map[string]any)
			if c.adjust != nil {
				adjust = append(adjust, c.adjust)
			}
			d := delivery(b, opportunityEvent(adjust...), 1)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if out := w.Process(context.Background(), d); out.Kind != queue.Complete {
					b.Fatalf("outcome %+v", out)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func TestWorker_writes_the_score_column_named_by_the_setting_and_guards_it(t *testing.T) {
	h := newHarness(t)
	h.settings["DVRELAY_SCORE_COLUMN"] = "cr123_riskscore"
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	if patches := h.dv.calls(); len(patches) != 1 || string(patches[0].body) != `{"cr123_riskscore":712}` {
		t.Fatalf("PATCH calls = %v, want one writing cr123_riskscore", patches)
	}

	echo := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"cr123_riskscore"} }), 1))
	if echo.Kind != queue.Complete || len(h.credit.calls()) != 1 {
		t.Errorf("echo of the score write: outcome %+v, credit calls %d; want skipped with no new call", echo, len(h.credit.calls()))
	}
}

func TestWorker_processes_deliveries_concurrently(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})
	const n = 16
	outs := make(chan queue.Outcome, n)
	for i := range n {
		id := fmt.Sprintf("5b1c7f0e-2d3a-4e5f-8a9b-%012d", i)
		d := delivery(t, opportunityEvent(func(ev map[string]any) { ev["EventId"] = id }), 1)
		go func() { outs <- w.Process(context.Background(), d) }()
	}
	for range n {
		if out := <-outs; out.Kind != queue.Complete {
			t.Errorf("outcome = %+v, want complete", out)
		}
	}
	if got := len(h.dv.calls()); got != n {
		t.Errorf("PATCH calls = %d, want %d", got, n)
	}
}

func TestWorker_a_401_from_Dataverse_is_retried_rather_than_dead_lettered(t *testing.T) {
	expired := reply{status: http.StatusUnauthorized, body: `{"error":{"code":"0x80072560","message":"ExpiredAuthTicket"}}`}
	tests := []struct {
		name   string
		script func(n int) reply
		want   queue.OutcomeKind
	}{
		// The client drops the refused token; the quick retry fetches a fresh one.
		{"once, as when a cached token was revoked", func(n int) reply {
			if n == 1 {
				return expired
			}
			return reply{status: http.StatusNoContent}
		}, queue.Complete},
		// An identity outage or a role being fixed must back off, not dead-letter every event.
		{"on every try", func(int) reply { return expired }, queue.RetryLater},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.dv.patchReply = tt.script
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != tt.want {
				t.Fatalf("outcome = %+v, want %s", out, tt.want)
			}
		})
	}
}

func TestWorker_dead_letters_at_once_a_lookup_Dataverse_cannot_address(t *testing.T) {
	routes := `{"routes":[{"name":"account-touch","steps":[
		{"name":"write-account","type":"dataverse-update","record":{"lookup":"parentaccountid"},
		 "set":{"new_lastopportunityid":"$event.RecordId"}}]}]}`
	tests := []struct {
		name   string
		lookup map[string]any
	}{
		{"id is not a GUID", map[string]any{"id": "ACC-0042", "logicalName": "account"}},
		{"logical name is not one", map[string]any{"id": "22222222-3333-4444-5555-666666666666", "logicalName": "Account Table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})
			ev := opportunityEvent(func(ev map[string]any) { ev["Attributes"].(map[string]any)["parentaccountid"] = tt.lookup })

			out := w.Process(context.Background(), delivery(t, ev, 1))

			// The same input fails the same way on every attempt: retrying it for hours only
			// delays the dead letter support has to look at.
			if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonPermanentFailure {
				t.Fatalf("outcome = %+v, want dead-letter %s", out, queue.ReasonPermanentFailure)
			}
			if n := len(h.dv.calls()); n != 0 {
				t.Errorf("PATCH calls = %d, want none", n)
			}
		})
	}
}

func TestWorker_loop_guard_knows_a_lookup_it_binds_by_its_column_name(t *testing.T) {
	// Every Update of an opportunity binds its account: without the guard, the worker's own
	// PATCH fires the step again, and again, for ever.
	routes := `{"routes":[{"name":"bind-account","match":{"entity":"opportunity","messages":["Update"]},"steps":[
		{"name":"bind","type":"dataverse-update",
		 "set":{"parentaccountid@odata.bind":"/accounts(22222222-3333-4444-5555-666666666666)"}}]}]}`
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})
	// Dataverse reports the lookup it was sent as parentaccountid@odata.bind by its column name.
	echo := opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"parentaccountid"} })

	out := w.Process(context.Background(), delivery(t, echo, 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	if n := len(h.dv.calls()); n != 0 {
		t.Errorf("PATCH calls = %d, want none: the event is the worker's own echo", n)
	}
}

func TestWorker_binds_a_custom_lookup_by_its_case_sensitive_navigation_property(t *testing.T) {
	// A custom lookup's navigation property is its schema name (new_AccountId), and the Web API
	// matches it case-sensitively; the echo reports the column in lower case.
	routes := `{"routes":[{"name":"bind-account","steps":[
		{"name":"bind","type":"dataverse-update",
		 "set":{"new_AccountId@odata.bind":"/accounts(22222222-3333-4444-5555-666666666666)"}}]}]}`
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
	echo := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) {
		ev["ChangedFields"] = []string{"new_accountid"}
	}), 1))

	if out.Kind != queue.Complete || echo.Kind != queue.Complete {
		t.Fatalf("outcomes = %+v, %+v; want complete", out, echo)
	}
	patches := h.dv.calls()
	if len(patches) != 1 {
		t.Fatalf("PATCH calls = %d, want 1 (the echo skipped)", len(patches))
	}
	if got, want := string(patches[0].body), `{"new_AccountId@odata.bind":"/accounts(22222222-3333-4444-5555-666666666666)"}`; got != want {
		t.Errorf("PATCH body = %s, want %s", got, want)
	}
}

func TestWorker_retries_a_409_for_a_request_still_in_flight_under_the_same_idempotency_key(t *testing.T) {
	// The first try timed out on our side while the credit API kept working on it; the quick
	// retry carries the same Idempotency-Key, and an API following the Idempotency-Key draft
	// answers 409 until the first request completes. Nothing about the event is wrong.
	h := newHarness(t)
	h.credit.script = func(n int) reply {
		if n == 1 {
			return reply{status: http.StatusConflict, body: `{"title":"A request is outstanding for this Idempotency-Key"}`}
		}
		return reply{status: http.StatusOK, body: `{"score": 712}`}
	}
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
}

func TestWorker_loop_guard_accepts_an_ignored_user_id_written_in_braces(t *testing.T) {
	// Dataverse shows record ids as {GUID} in its URLs and Advanced Find; events carry them bare.
	h := newHarness(t)
	w := h.worker(t, worker.Config{IgnoreUserIDs: []string{"{" + strings.ToUpper(workerID) + "}"}})

	w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) { ev["TriggeredBy"] = workerID }), 1))

	if n := len(h.credit.calls()); n != 0 {
		t.Errorf("credit calls = %d, want none: the event was made by the ignored user", n)
	}
}

func TestWorker_loop_guard_does_not_skip_another_tables_column_of_the_same_name(t *testing.T) {
	// The worker writes new_creditscore on opportunities only. An account whose own
	// new_creditscore a person changed is not an echo and must be synced.
	routes := `{"routes":[
		{"name":"score","match":{"entity":"opportunity"},"steps":[
			{"name":"write","type":"dataverse-update","set":{"new_creditscore":1}}]},
		{"name":"account-sync","match":{"entity":"account"},"steps":[
			{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]}]}`
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})
	account := opportunityEvent(func(ev map[string]any) {
		ev["Entity"] = "account"
		ev["EventName"] = "AccountUpdated"
		ev["ChangedFields"] = []string{"new_creditscore"}
	})
	echo := opportunityEvent(func(ev map[string]any) { ev["ChangedFields"] = []string{"new_creditscore"} })

	w.Process(context.Background(), delivery(t, account, 1))
	w.Process(context.Background(), delivery(t, echo, 1))

	if n := len(h.erp.calls()); n != 1 {
		t.Errorf("ERP calls = %d, want 1: the account change was taken for the worker's echo", n)
	}
	if n := len(h.dv.calls()); n != 0 {
		t.Errorf("PATCH calls = %d, want none: the opportunity event is the worker's echo", n)
	}
}
