package worker_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/servicebus"
)

// fakeRerouter is the main queue and the dead-letter queue under the trigger's Settler: it records
// what was published and parked, and fails when told to.
type fakeRerouter struct {
	mu        sync.Mutex
	published []*queue.Message
	parked    []parked
	fail      error
}

type parked struct {
	msg                 *queue.Message
	reason, description string
}

func (f *fakeRerouter) Publish(_ context.Context, m *queue.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.published = append(f.published, m)
	return nil
}

func (f *fakeRerouter) DeadLetter(_ context.Context, m *queue.Message, reason, description string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.parked = append(f.parked, parked{m, reason, description})
	return nil
}

var (
	_ queue.Publisher    = (*fakeRerouter)(nil)
	_ queue.DeadLetterer = (*fakeRerouter)(nil)
)

// handleTriggered processes d and settles the outcome as the EventWorker function does under the
// Functions trigger, with r as both queues.
func handleTriggered(ctx context.Context, w *worker.Worker, d queue.Delivery, r *fakeRerouter) (queue.Outcome, error) {
	out := w.Process(ctx, d)
	return out, servicebus.NewTriggerSettler(r, r).Settle(ctx, d, out)
}

func TestHandleTriggered_schedules_a_copy_for_a_retry(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(int) reply { return reply{status: http.StatusServiceUnavailable} }
	w := h.worker(t, worker.Config{})
	r := &fakeRerouter{}
	d := delivery(t, opportunityEvent(), 2)
	d.SessionID = recordID
	d.DeliveryCount = 3

	out, err := handleTriggered(context.Background(), w, d, r)

	if err != nil || out.Kind != queue.RetryLater {
		t.Fatalf("HandleTriggered = %+v, %v; want retry-later and no error", out, err)
	}
	if len(r.published) != 1 || len(r.parked) != 0 {
		t.Fatalf("published %d, parked %d; want 1 and 0", len(r.published), len(r.parked))
	}
	m := r.published[0]
	if m.MessageID != eventID+"/retry/3" {
		t.Errorf("MessageID = %q, want %q", m.MessageID, eventID+"/retry/3")
	}
	if want := h.now.Add(time.Minute); !m.ScheduledEnqueueTime.Equal(want) {
		t.Errorf("ScheduledEnqueueTime = %s, want %s (attempt 2 waits 1m)", m.ScheduledEnqueueTime, want)
	}
	if m.ApplicationProperties[queue.PropAttempt] != int64(3) {
		t.Errorf("Attempt = %#v, want int64(3)", m.ApplicationProperties[queue.PropAttempt])
	}
	if m.ApplicationProperties[queue.PropEventName] != "OpportunityUpdated" {
		t.Errorf("application properties %v lost the original ones", m.ApplicationProperties)
	}
	if string(m.Body) != string(d.Body) || m.CorrelationID != corrID || m.Subject != d.Subject || m.SessionID != recordID || m.ContentType != "application/json" {
		t.Errorf("copy = %+v, want the original body, correlation id, subject and session id", m)
	}
	if d.ApplicationProperties[queue.PropAttempt] != int64(2) {
		t.Errorf("the delivery's own properties were modified: %v", d.ApplicationProperties)
	}
}

func TestHandleTriggered_parks_a_copy_with_its_reason(t *testing.T) {
	h := newHarness(t)
	h.dv.patchReply = func(int) reply {
		return reply{status: http.StatusNotFound, body: `{"error":{"code":"0x80040217","message":"gone"}}`}
	}
	w := h.worker(t, worker.Config{})
	r := &fakeRerouter{}
	d := delivery(t, opportunityEvent(), 1)
	d.DeliveryCount = 2

	out, err := handleTriggered(context.Background(), w, d, r)

	if err != nil || out.Kind != queue.DeadLetter {
		t.Fatalf("HandleTriggered = %+v, %v; want dead-letter and no error", out, err)
	}
	if len(r.parked) != 1 || len(r.published) != 0 {
		t.Fatalf("parked %d, published %d; want 1 and 0", len(r.parked), len(r.published))
	}
	p := r.parked[0]
	if p.reason != queue.ReasonPermanentFailure || p.description != out.Description || p.description == "" {
		t.Errorf("reason, description = %q, %q; want %q and the outcome's description", p.reason, p.description, queue.ReasonPermanentFailure)
	}
	want := map[string]any{
		queue.PropFailedStep:                 "write-score",
		queue.PropOriginalMessageID:          eventID,
		queue.PropOriginalDeliveryCount:      int64(2),
		queue.PropDeadLetterReason:           queue.ReasonPermanentFailure,
		queue.PropDeadLetterErrorDescription: out.Description,
	}
	for k, v := range want {
		if got := p.msg.ApplicationProperties[k]; got != v {
			t.Errorf("property %s = %#v, want %#v", k, got, v)
		}
	}
	if p.msg.MessageID != eventID || string(p.msg.Body) != string(d.Body) {
		t.Errorf("parked copy = %+v, want the original id and body", p.msg)
	}
}

func TestHandleTriggered_completes_without_rerouting(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})
	r := &fakeRerouter{fail: errors.New("must not be called")}

	out, err := handleTriggered(context.Background(), w, delivery(t, opportunityEvent(), 1), r)

	if err != nil || out.Kind != queue.Complete {
		t.Fatalf("HandleTriggered = %+v, %v; want complete and no error", out, err)
	}
}

func TestHandleTriggered_returns_the_error_when_the_copy_cannot_be_sent(t *testing.T) {
	brokerDown := errors.New("amqp: connection lost")
	tests := []struct {
		name  string
		setup func(h *harness)
		kind  queue.OutcomeKind
	}{
		{"retry later", func(h *harness) { h.erp.script = func(int) reply { return reply{status: http.StatusBadGateway} } }, queue.RetryLater},
		{"dead letter", func(h *harness) { h.erp.script = func(int) reply { return reply{status: http.StatusBadRequest} } }, queue.DeadLetter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			w := h.worker(t, worker.Config{})

			out, err := handleTriggered(context.Background(), w, delivery(t, opportunityEvent(), 1), &fakeRerouter{fail: brokerDown})

			if !errors.Is(err, brokerDown) {
				t.Fatalf("error = %v, want it to wrap the broker's error (the caller answers 500)", err)
			}
			if out.Kind != tt.kind {
				t.Errorf("outcome = %v, want %v", out.Kind, tt.kind)
			}
		})
	}
}

func TestHandleTriggered_names_the_retries_of_a_resubmitted_event_apart_from_its_first_chain(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(int) reply { return reply{status: http.StatusServiceUnavailable} }
	w := h.worker(t, worker.Config{})
	r := &fakeRerouter{}

	// The first chain schedules <EventId>/retry/2, then dead-letters (say, a 404 on attempt 2).
	// Support resubmits it minutes later: a fresh chain (no Attempt) under a new MessageID.
	first := delivery(t, opportunityEvent(), 1)
	resubmitted := delivery(t, opportunityEvent(), 1)
	resubmitted.MessageID = eventID + "/resubmit/1764050400000000000"
	for _, d := range []queue.Delivery{first, resubmitted} {
		if _, err := handleTriggered(context.Background(), w, d, r); err != nil {
			t.Fatalf("HandleTriggered(%s): %v", d.MessageID, err)
		}
	}

	if len(r.published) != 2 {
		t.Fatalf("published %d copies, want 2", len(r.published))
	}
	// The same id inside the queue's duplicate detection window would be accepted and dropped:
	// the resubmitted original completes and the event is gone.
	if a, b := r.published[0].MessageID, r.published[1].MessageID; a == b {
		t.Errorf("both chains scheduled their retry as %q; want distinct ids", a)
	}
	if got, want := r.published[0].MessageID, eventID+"/retry/2"; got != want {
		t.Errorf("first chain's retry = %q, want %q", got, want)
	}
}

func TestHandleTriggered_names_a_redelivered_original_retry_as_the_first_did(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(int) reply { return reply{status: http.StatusServiceUnavailable} }
	w := h.worker(t, worker.Config{})
	r := &fakeRerouter{}
	d := delivery(t, opportunityEvent(), 3)

	// The host redelivers a message whose 200 it never saw: the second copy must carry the same
	// id so that duplicate detection drops it.
	for range 2 {
		if _, err := handleTriggered(context.Background(), w, d, r); err != nil {
			t.Fatal(err)
		}
	}

	if len(r.published) != 2 || r.published[0].MessageID != eventID+"/retry/4" || r.published[1].MessageID != eventID+"/retry/4" {
		t.Errorf("published %v, want two copies named %s/retry/4", r.published, eventID)
	}
}
