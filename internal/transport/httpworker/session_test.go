package httpworker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/servicebus"
	"github.com/dvrelay/dvrelay/internal/transport/httpworker"
)

// Under the Functions host on a session-enabled queue, a retry keeps its place in the record's
// session: these invocations are shaped as the host sends them (SessionId and DeliveryCount in
// Metadata) to the real worker and the real trigger settler.

const sessionKey = "account/2f9ad1b4-0000-4000-8000-000000000001"

// rerouter stands for the main queue and the dead-letter queue behind the trigger's settler.
type rerouter struct {
	mu        sync.Mutex
	published []*queue.Message
	parked    []*queue.Message
	reasons   []string
}

func (r *rerouter) Publish(_ context.Context, m *queue.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, m)
	return nil
}

func (r *rerouter) DeadLetter(_ context.Context, m *queue.Message, reason, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parked = append(r.parked, m)
	r.reasons = append(r.reasons, reason)
	return nil
}

// sessionWorker is the EventWorker function with the in-place policy, its ERP answering status.
func sessionWorker(t *testing.T, status int) (http.Handler, *rerouter, worker.RetryPolicy) {
	t.Helper()
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
	}))
	t.Cleanup(erp.Close)
	routes := filepath.Join(t.TempDir(), "routes.json")
	doc := `{"routes":[{"name":"sync","match":{"entity":"account"},"steps":[{"name":"erp","type":"http","url":"` + erp.URL + `"}]}]}`
	if err := os.WriteFile(routes, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	parser, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	policy := worker.InPlacePolicy(worker.RetryPolicy{QuickAttempts: 1, LaterBase: 30 * time.Millisecond})
	w, err := worker.New(worker.Config{RoutesPath: routes, Retry: policy},
		worker.Deps{Settings: func(string) (string, bool) { return "", false }, Decoder: parser, Jitter: func() float64 { return 0 }},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := &rerouter{}
	h := httpworker.New(w, servicebus.NewTriggerSettler(r, r), "msg", slog.New(slog.DiscardHandler),
		httpworker.Options{MaxHold: 200 * time.Millisecond})
	return h, r, policy
}

// sessionInvocation is the host's invocation for a message of sessionKey delivered for the n-th time.
func sessionInvocation(t *testing.T, body string, deliveryCount int) string {
	t.Helper()
	quoted := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	data, _ := json.Marshal(body)
	inv := map[string]any{
		"Data": map[string]json.RawMessage{"msg": json.RawMessage(quoted(string(data)))},
		"Metadata": map[string]any{
			"DeliveryCount":         strconv.Itoa(deliveryCount),
			"SessionId":             quoted(sessionKey),
			"MessageId":             quoted("evt-1"),
			"CorrelationId":         quoted("corr-1"),
			"ContentType":           quoted("application/json"),
			"SequenceNumber":        "7",
			"EnqueuedTimeUtc":       "2026-11-25T04:40:12",
			"ApplicationProperties": map[string]any{queue.PropAttempt: 1, queue.PropOrderKey: sessionKey},
		},
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const accountUpdate = `{"SchemaVersion":"1.0","EventId":"6b1c1a0e-8f3e-5d7a-9c2b-0a1b2c3d4e5f","CorrelationId":"corr-1","EventName":"AccountUpdated",
	"Entity":"account","Message":"Update","RecordId":"2f9ad1b4-0000-4000-8000-000000000001","ChangedFields":["name"],
	"TriggeredBy":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","Timestamp":"2026-11-25T05:59:58Z","Source":"dataverse-webhook"}`

func TestSessionInvocation_that_fails_transiently_waits_the_back_off_and_answers_non_2xx_without_a_copy(t *testing.T) {
	h, r, _ := sessionWorker(t, http.StatusServiceUnavailable)
	start := time.Now()
	rec := invoke(t, h, sessionInvocation(t, accountUpdate, 3))
	held := time.Since(start)
	if rec.Code/100 == 2 {
		t.Fatalf("answered %d: the host would complete the message and the record's next event would overtake it", rec.Code)
	}
	// Attempt 3 (the delivery count) waits LaterBase·2² = 120ms, inside the 200ms hold.
	if held < 120*time.Millisecond {
		t.Errorf("answered after %v, want the back-off of attempt 3 (120ms) waited in the invocation", held)
	}
	if len(r.published) != 0 || len(r.parked) != 0 {
		t.Errorf("published %d copies and parked %d: a retry in place sends nothing", len(r.published), len(r.parked))
	}
}

func TestSessionInvocation_waits_no_longer_than_the_hold(t *testing.T) {
	h, _, policy := sessionWorker(t, http.StatusServiceUnavailable)
	start := time.Now()
	rec := invoke(t, h, sessionInvocation(t, accountUpdate, policy.MaxAttempts-1)) // a back-off of hours
	if held := time.Since(start); held > 2*time.Second || rec.Code/100 == 2 {
		t.Fatalf("answered %d after %v, want non-2xx after the 200ms hold", rec.Code, held)
	}
}

func TestSessionInvocation_with_attempts_spent_dead_letters_it_and_answers_200_to_release_the_record(t *testing.T) {
	h, r, policy := sessionWorker(t, http.StatusServiceUnavailable)
	rec := invoke(t, h, sessionInvocation(t, accountUpdate, policy.MaxAttempts))
	if rec.Code != http.StatusOK {
		t.Fatalf("answered %d, want 200: the host completes the message and the session moves on", rec.Code)
	}
	if len(r.parked) != 1 || r.reasons[0] != queue.ReasonMaxAttemptsExceeded {
		t.Fatalf("parked %d (%v), want one dead letter with reason %s", len(r.parked), r.reasons, queue.ReasonMaxAttemptsExceeded)
	}
	if got := r.parked[0].ApplicationProperties[queue.PropAttempt]; got != int64(policy.MaxAttempts) {
		t.Errorf("dead letter Attempt = %#v, want the delivery count %d", got, policy.MaxAttempts)
	}
	if r.parked[0].SessionID != sessionKey {
		t.Errorf("dead letter SessionID = %q, want the record's key: support sees which record it held", r.parked[0].SessionID)
	}
}

func TestSessionInvocation_of_a_poison_message_dead_letters_it_at_once_and_answers_200(t *testing.T) {
	h, r, _ := sessionWorker(t, http.StatusOK)
	start := time.Now()
	rec := invoke(t, h, sessionInvocation(t, `{"not":"an event"`, 1))
	if rec.Code != http.StatusOK || time.Since(start) > time.Second {
		t.Fatalf("answered %d after %v, want 200 at once", rec.Code, time.Since(start))
	}
	if len(r.parked) != 1 || r.reasons[0] != queue.ReasonInvalidMessage {
		t.Fatalf("parked %v, want one dead letter with reason %s", r.reasons, queue.ReasonInvalidMessage)
	}
}

func TestSessionInvocation_that_succeeds_answers_200(t *testing.T) {
	h, r, _ := sessionWorker(t, http.StatusOK)
	if rec := invoke(t, h, sessionInvocation(t, accountUpdate, 1)); rec.Code != http.StatusOK {
		t.Fatalf("answered %d", rec.Code)
	}
	if len(r.published)+len(r.parked) != 0 {
		t.Errorf("a success sent copies")
	}
}
