package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// panicDecoder is a decoder with a bug.
type panicDecoder struct{}

func (panicDecoder) DecodeCanonical(body []byte) (event.Event, error) {
	_ = body[len(body)] // index out of range: a runtime panic
	return event.Event{}, nil
}

// funcStep is a custom step type whose behaviour the test chooses.
type funcStep func(ctx context.Context, r *worker.Run) error

func (f funcStep) Run(ctx context.Context, r *worker.Run) error { return f(ctx, r) }

func customWorker(t *testing.T, h *harness, cfg worker.Config, routes string, run funcStep) *worker.Worker {
	t.Helper()
	cfg.RoutesPath = writeRoutes(t, routes)
	return h.worker(t, cfg, func(d *worker.Deps) {
		d.StepTypes = map[string]worker.StepType{
			"custom": func(worker.StepDecl, worker.BuildEnv) (worker.Step, error) { return run, nil },
		}
	})
}

const oneCustomStep = `{"routes":[{"name":"r","steps":[{"name":"boom","type":"custom","timeout":"50ms"}]}]}`

// TestProcess_chain_runs_recover_correlate_timeout_decode_guard_match_steps_in_that_order pins
// the order of the fixed chain through behaviour that only that order produces.
func TestProcess_chain_runs_recover_correlate_timeout_decode_guard_match_steps_in_that_order(t *testing.T) {
	t.Run("recover is outermost: a panic while decoding becomes a retry, not a crash", func(t *testing.T) {
		h := newHarness(t)
		w := h.worker(t, worker.Config{}, func(d *worker.Deps) { d.Decoder = panicDecoder{} })
		r := &fakeRerouter{}
		d := delivery(t, opportunityEvent(), 2)

		out, err := handleTriggered(context.Background(), w, d, r)

		if err != nil || out.Kind != queue.RetryLater || out.Attempt != 3 {
			t.Fatalf("outcome = %+v, %v; want retry-later as attempt 3", out, err)
		}
		if len(r.published) != 1 || r.published[0].MessageID != eventID+"/retry/3" {
			t.Errorf("published %v, want one copy named after the original message", r.published)
		}
	})
	t.Run("recover covers steps: a panicking step is retried later and named", func(t *testing.T) {
		h := newHarness(t)
		w := customWorker(t, h, worker.Config{}, oneCustomStep, func(context.Context, *worker.Run) error {
			var p *struct{ n int }
			p.n++
			return nil
		})
		out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
		if out.Kind != queue.RetryLater || out.Step != "boom" || !strings.Contains(out.Description, "nil pointer") {
			t.Fatalf("outcome = %+v, want retry-later naming step boom and the runtime error", out)
		}
	})
	t.Run("a panic on the last attempt dead-letters, capped like any transient failure", func(t *testing.T) {
		h := newHarness(t)
		w := customWorker(t, h, worker.Config{MaxAttempts: 2}, oneCustomStep, func(context.Context, *worker.Run) error { panic("bug") })
		out := w.Process(context.Background(), delivery(t, opportunityEvent(), 2))
		if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonMaxAttemptsExceeded {
			t.Fatalf("outcome = %+v, want dead-letter MaxAttemptsExceeded", out)
		}
	})
	t.Run("correlate comes before decode: the poison message's log line carries the correlation id", func(t *testing.T) {
		h := newHarness(t)
		w := h.worker(t, worker.Config{})
		d := delivery(t, opportunityEvent(), 1)
		d.Body = []byte(`not json`)
		w.Process(context.Background(), d)
		var found bool
		for _, l := range h.logs.lines(t) {
			if l["msg"] == "outcome" && l["reason"] == queue.ReasonInvalidMessage {
				found = l["correlationId"] == corrID && l["messageId"] == eventID
			}
		}
		if !found {
			t.Errorf("no InvalidMessage outcome line with correlationId and messageId:\n%s", h.logs)
		}
	})
	t.Run("decode comes before the loop guard: poison from an ignored user is still dead-lettered", func(t *testing.T) {
		h := newHarness(t)
		w := h.worker(t, worker.Config{IgnoreUserIDs: []string{workerID}})
		out := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) {
			ev["TriggeredBy"] = workerID
			ev["RecordId"] = "not-a-guid"
		}), 1))
		if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonInvalidMessage {
			t.Fatalf("outcome = %+v, want dead-letter InvalidMessage", out)
		}
	})
	t.Run("the loop guard comes before the steps: an echo calls nothing", func(t *testing.T) {
		h := newHarness(t)
		var ran atomic.Int32
		w := customWorker(t, h, worker.Config{IgnoreUserIDs: []string{workerID}}, oneCustomStep, func(context.Context, *worker.Run) error { ran.Add(1); return nil })
		out := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) { ev["TriggeredBy"] = workerID }), 1))
		if out.Kind != queue.Complete || ran.Load() != 0 {
			t.Fatalf("outcome = %+v, step ran %d times; want complete without running", out, ran.Load())
		}
	})
	t.Run("each quick try gets its own timeout inside the delivery's", func(t *testing.T) {
		h := newHarness(t)
		var tries atomic.Int32
		w := customWorker(t, h, worker.Config{}, oneCustomStep, func(ctx context.Context, _ *worker.Run) error {
			tries.Add(1)
			<-ctx.Done()
			return ctx.Err()
		})
		out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
		if out.Kind != queue.RetryLater || tries.Load() != 3 {
			t.Fatalf("outcome = %v after %d tries, want retry-later after 3 tries that each timed out on their own", out.Kind, tries.Load())
		}
	})
	t.Run("the delivery timeout bounds the quick retries", func(t *testing.T) {
		h := newHarness(t)
		var tries atomic.Int32
		routes := `{"routes":[{"name":"r","steps":[{"name":"slow","type":"custom","timeout":"1m"}]}]}`
		w := customWorker(t, h, worker.Config{ProcessTimeout: 80 * time.Millisecond}, routes, func(ctx context.Context, _ *worker.Run) error {
			tries.Add(1)
			<-ctx.Done()
			return ctx.Err()
		})
		out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
		if out.Kind != queue.RetryLater || tries.Load() != 1 {
			t.Fatalf("outcome = %v after %d tries, want retry-later after 1 try", out.Kind, tries.Load())
		}
	})
}

func TestNew_registers_custom_step_types_that_see_the_event_and_earlier_answers(t *testing.T) {
	h := newHarness(t)
	routes := `{"routes":[{"name":"r","match":{"entity":"opportunity"},"steps":[
		{"name":"credit-score","type":"http","url":"${DVRELAY_CREDIT_URL}","expect":{"score":"number"}},
		{"name":"notify","type":"custom"}]}]}`
	var gotScore any
	var gotRecord any
	w := customWorker(t, h, worker.Config{}, routes, func(_ context.Context, r *worker.Run) error {
		gotScore, _ = r.StepValue("credit-score", []string{"score"})
		gotRecord, _ = r.EventValue([]string{"RecordId"})
		return nil
	})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	if gotScore != json.Number("712") || gotRecord != recordID {
		t.Errorf("custom step saw score %v and record %v, want 712 and %s", gotScore, gotRecord, recordID)
	}
}

func TestNew_refuses_to_replace_a_built_in_step_type(t *testing.T) {
	_, err := worker.New(worker.Config{RoutesPath: "../../routes.json"}, worker.Deps{
		Decoder:   newDecoder(t),
		Settings:  func(string) (string, bool) { return "", false },
		StepTypes: map[string]worker.StepType{"http": nil},
	}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `"http"`) {
		t.Fatalf("New error = %v, want a refusal naming the http type", err)
	}
}

func TestWorker_custom_step_errors_marked_permanent_are_dead_lettered(t *testing.T) {
	h := newHarness(t)
	w := customWorker(t, h, worker.Config{}, oneCustomStep, func(context.Context, *worker.Run) error {
		return worker.MarkPermanent(errors.New("order rejected"))
	})
	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
	if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonPermanentFailure || out.Step != "boom" {
		t.Fatalf("outcome = %+v, want dead-letter PermanentFailure at boom", out)
	}
}
