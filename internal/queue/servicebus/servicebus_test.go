package servicebus

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

const (
	mainQueue = config.DefaultQueueName
	dlqQueue  = config.DefaultDeadLetterQueueName
)

// fixture is the backend wired to a fake namespace laid out as infra/main.bicep lays it out:
// the main queue forwards its dead letters to the dead-letter queue.
type fixture struct {
	clock     *manualClock
	broker    *fakeBroker
	mainSend  *fakeSender // the publisher's sender
	retrySend *fakeSender // the receiver's sender (Reschedule)
	parkSend  *fakeSender // the dead-letter queue's sender
	resubmit  *fakeSender // the dead-letter queue's sender to the main queue
	mainRecv  *fakeReceiver
	dlqRecv   *fakeReceiver

	pub  *Publisher
	recv *Receiver
	dlq  *DeadLetterQueue
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: newManualClock(), broker: newFakeBroker()}
	f.broker.now = f.clock.now
	mainCfg := defaultFakeQueue()
	mainCfg.forwardDLQTo = dlqQueue
	f.broker.addQueue(mainQueue, mainCfg)
	dlqCfg := defaultFakeQueue()
	dlqCfg.maxDeliveryCount = 100
	f.broker.addQueue(dlqQueue, dlqCfg)

	f.mainSend = f.broker.sender(mainQueue)
	f.retrySend = f.broker.sender(mainQueue)
	f.parkSend = f.broker.sender(dlqQueue)
	f.resubmit = f.broker.sender(mainQueue)
	f.mainRecv = f.broker.receiver(mainQueue)
	f.dlqRecv = f.broker.receiver(dlqQueue)

	f.pub = newPublisher(f.mainSend)
	f.recv = newReceiver(f.mainRecv, f.retrySend)
	f.recv.now = f.clock.now
	f.dlq = newDeadLetterQueue(f.parkSend, f.dlqRecv, f.resubmit)
	f.dlq.now = f.clock.now
	f.dlq.idleWait = 50 * time.Millisecond
	return f
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func event(id string) *queue.Message {
	return &queue.Message{
		MessageID:     id,
		CorrelationID: "corr-" + id,
		Subject:       "OpportunityUpdated",
		ContentType:   "application/json",
		Body:          []byte(`{"EventId":"` + id + `"}`),
		ApplicationProperties: map[string]any{
			queue.PropEventName: "OpportunityUpdated",
			queue.PropEntity:    "opportunity",
		},
	}
}

func receiveOne(t *testing.T, ctx context.Context, r *Receiver) *queue.Received {
	t.Helper()
	got, err := r.Receive(ctx, 1)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Receive returned %d messages, want 1", len(got))
	}
	return got[0]
}

func TestPublisher_maps_every_message_field_onto_the_wire_message(t *testing.T) {
	at := time.Date(2026, 11, 25, 7, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		in   queue.Message
		want func(t *testing.T, m *azservicebus.Message)
	}{
		{
			name: "all fields",
			in: queue.Message{
				MessageID: "e1", CorrelationID: "c1", Subject: "AccountCreated", SessionID: "r1",
				ContentType: "application/json", Body: []byte(`{}`),
				ApplicationProperties: map[string]any{queue.PropAttempt: int64(2), queue.PropEntity: "account"},
				ScheduledEnqueueTime:  at,
			},
			want: func(t *testing.T, m *azservicebus.Message) {
				checkPtr(t, "MessageID", m.MessageID, "e1")
				checkPtr(t, "CorrelationID", m.CorrelationID, "c1")
				checkPtr(t, "Subject", m.Subject, "AccountCreated")
				checkPtr(t, "SessionID", m.SessionID, "r1")
				checkPtr(t, "ContentType", m.ContentType, "application/json")
				if string(m.Body) != `{}` {
					t.Errorf("Body = %q", m.Body)
				}
				if m.ApplicationProperties[queue.PropAttempt] != int64(2) || m.ApplicationProperties[queue.PropEntity] != "account" {
					t.Errorf("ApplicationProperties = %v", m.ApplicationProperties)
				}
				if m.ScheduledEnqueueTime == nil || !m.ScheduledEnqueueTime.Equal(at) || m.ScheduledEnqueueTime.Location() != time.UTC {
					t.Errorf("ScheduledEnqueueTime = %v, want %v in UTC", m.ScheduledEnqueueTime, at)
				}
			},
		},
		{
			name: "optional fields left unset",
			in:   queue.Message{MessageID: "e2", Body: []byte(`{}`)},
			want: func(t *testing.T, m *azservicebus.Message) {
				checkPtr(t, "MessageID", m.MessageID, "e2")
				for name, p := range map[string]*string{"CorrelationID": m.CorrelationID, "Subject": m.Subject, "SessionID": m.SessionID, "ContentType": m.ContentType} {
					if p != nil {
						t.Errorf("%s = %q, want unset", name, *p)
					}
				}
				if m.ScheduledEnqueueTime != nil {
					t.Errorf("ScheduledEnqueueTime = %v, want unset", m.ScheduledEnqueueTime)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if err := f.pub.Publish(testContext(t), &tt.in); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			sent := f.mainSend.messages()
			if len(sent) != 1 {
				t.Fatalf("sent %d messages, want 1", len(sent))
			}
			tt.want(t, sent[0])
		})
	}
}

func checkPtr(t *testing.T, name string, got *string, want string) {
	t.Helper()
	if got == nil || *got != want {
		t.Errorf("%s = %v, want %q", name, got, want)
	}
}

func TestPublisher_rejects_a_message_the_broker_could_not_deduplicate(t *testing.T) {
	tests := []struct {
		name string
		id   string
	}{
		{"no MessageID", ""},
		{"MessageID over 128 characters", strings.Repeat("x", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if err := f.pub.Publish(testContext(t), &queue.Message{MessageID: tt.id, Body: []byte(`{}`)}); err == nil {
				t.Fatal("Publish succeeded, want an error")
			}
			if n := len(f.mainSend.messages()); n != 0 {
				t.Errorf("sent %d messages, want none", n)
			}
		})
	}
}

func TestPublisher_wraps_send_errors_with_the_message_id(t *testing.T) {
	f := newFixture(t)
	refused := &azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}
	f.mainSend.onSend = func(context.Context, *azservicebus.Message) error { return refused }
	err := f.pub.Publish(testContext(t), event("evt-7"))
	var sbErr *azservicebus.Error
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeUnauthorizedAccess {
		t.Fatalf("Publish error = %v, want the SDK's unauthorized error in the chain", err)
	}
	if !strings.Contains(err.Error(), "evt-7") {
		t.Errorf("error %q does not name the MessageID", err)
	}
}

func TestPublisher_gives_up_when_the_context_deadline_passes_on_a_hanging_send(t *testing.T) {
	f := newFixture(t)
	f.mainSend.onSend = func(ctx context.Context, _ *azservicebus.Message) error {
		<-ctx.Done() // a broker that never answers
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := f.pub.Publish(ctx, event("evt-hang"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish error = %v, want context.DeadlineExceeded", err)
	}
}

func TestPublisher_does_not_share_the_callers_property_map(t *testing.T) {
	f := newFixture(t)
	m := event("evt-1")
	if err := f.pub.Publish(testContext(t), m); err != nil {
		t.Fatal(err)
	}
	m.ApplicationProperties["later"] = "changed"
	if _, ok := f.mainSend.messages()[0].ApplicationProperties["later"]; ok {
		t.Error("a change to the caller's map reached the sent message")
	}
}

func TestReceiver_maps_every_received_field(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	in := event("evt-1")
	in.SessionID = "rec-1"
	if err := f.pub.Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
	got := receiveOne(t, ctx, f.recv)

	if got.MessageID != "evt-1" || got.CorrelationID != "corr-evt-1" || got.Subject != "OpportunityUpdated" ||
		got.SessionID != "rec-1" || got.ContentType != "application/json" || string(got.Body) != string(in.Body) {
		t.Errorf("message fields = %+v, want those published", got.Message)
	}
	if got.ApplicationProperties[queue.PropEntity] != "opportunity" {
		t.Errorf("ApplicationProperties = %v", got.ApplicationProperties)
	}
	if got.DeliveryCount != 1 {
		t.Errorf("DeliveryCount = %d, want 1 on the first delivery", got.DeliveryCount)
	}
	if got.SequenceNumber != 1 {
		t.Errorf("SequenceNumber = %d, want 1", got.SequenceNumber)
	}
	if !got.EnqueuedTime.Equal(f.clock.now()) {
		t.Errorf("EnqueuedTime = %v, want %v", got.EnqueuedTime, f.clock.now())
	}
	if want := f.clock.now().Add(time.Minute); !got.LockedUntil.Equal(want) {
		t.Errorf("LockedUntil = %v, want %v", got.LockedUntil, want)
	}
	if _, err := parseLockToken(got.LockToken); err != nil {
		t.Errorf("LockToken %q is not a GUID: %v", got.LockToken, err)
	}
}

func TestReceiver_reports_a_settlement_on_an_expired_lock_as_ErrLockLost(t *testing.T) {
	settlements := []struct {
		name   string
		settle func(ctx context.Context, r *Receiver, m *queue.Received) error
	}{
		{"complete", func(ctx context.Context, r *Receiver, m *queue.Received) error { return r.Complete(ctx, m) }},
		{"abandon", func(ctx context.Context, r *Receiver, m *queue.Received) error { return r.Abandon(ctx, m) }},
		{"dead-letter", func(ctx context.Context, r *Receiver, m *queue.Received) error {
			return r.DeadLetterReceived(ctx, m, "PermanentFailure", "erp said 400")
		}},
		{"renew", func(ctx context.Context, r *Receiver, m *queue.Received) error { return r.RenewLock(ctx, m) }},
	}
	for _, s := range settlements {
		t.Run(s.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := testContext(t)
			if err := f.pub.Publish(ctx, event("evt-1")); err != nil {
				t.Fatal(err)
			}
			m := receiveOne(t, ctx, f.recv)
			f.clock.advance(time.Minute + time.Second)

			err := s.settle(ctx, f.recv, m)
			if !errors.Is(err, queue.ErrLockLost) {
				t.Fatalf("error = %v, want queue.ErrLockLost", err)
			}
			var sbErr *azservicebus.Error
			if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
				t.Errorf("error = %v, want the SDK's locklost error kept in the chain", err)
			}
			again := receiveOne(t, ctx, f.recv)
			if again.MessageID != "evt-1" || again.DeliveryCount != 2 {
				t.Errorf("redelivered %s with count %d, want evt-1 with count 2", again.MessageID, again.DeliveryCount)
			}
		})
	}
}

func TestReceiver_settles_by_lock_token_a_message_it_did_not_receive(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.pub.Publish(ctx, event("evt-1")); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, ctx, f.recv)
	// Another Receiver on the same queue (another process after a restart) holds only the token.
	other := newReceiver(f.mainRecv, f.retrySend)
	if err := other.Complete(ctx, m); err != nil {
		t.Fatalf("Complete by token: %v", err)
	}
	if active, _ := f.broker.state(mainQueue); len(active) != 0 {
		t.Errorf("queue holds %d messages after complete, want 0", len(active))
	}
}

func TestReceiver_renewing_a_lock_moves_LockedUntil_and_keeps_the_message(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.pub.Publish(ctx, event("evt-1")); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, ctx, f.recv)
	f.clock.advance(50 * time.Second)
	if err := f.recv.RenewLock(ctx, m); err != nil {
		t.Fatalf("RenewLock: %v", err)
	}
	if want := f.clock.now().Add(time.Minute); !m.LockedUntil.Equal(want) {
		t.Errorf("LockedUntil = %v, want %v", m.LockedUntil, want)
	}
	f.clock.advance(50 * time.Second) // past the first lock, inside the renewed one
	if err := f.recv.Complete(ctx, m); err != nil {
		t.Fatalf("Complete after renew: %v", err)
	}
}

func TestReceiver_abandon_redelivers_and_the_broker_dead_letters_past_max_delivery_count(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.pub.Publish(ctx, event("evt-poison")); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 10; want++ {
		m := receiveOne(t, ctx, f.recv)
		if m.DeliveryCount != want {
			t.Fatalf("delivery %d has DeliveryCount %d", want, m.DeliveryCount)
		}
		if err := f.recv.Abandon(ctx, m); err != nil {
			t.Fatalf("Abandon: %v", err)
		}
	}
	parked, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].MessageID != "evt-poison" || parked[0].Reason != "MaxDeliveryCountExceeded" {
		t.Fatalf("dead-letter queue = %+v, want evt-poison with reason MaxDeliveryCountExceeded", parked)
	}
}

func TestReceiver_serialises_concurrent_receives(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	for i := range 20 {
		if err := f.pub.Publish(ctx, event("evt-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := f.recv.Receive(ctx, 1)
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Receive: %v", err)
		}
	}
}

func TestReceiver_reschedule_sends_a_scheduled_copy_then_completes_the_original(t *testing.T) {
	tests := []struct {
		name        string
		id          string
		props       map[string]any
		prevAttempt any
		wantID      string
		wantAttempt int64
	}{
		{"first retry from the intake's message", "evt-1", map[string]any{queue.PropAttempt: int64(2)}, nil, "evt-1/retry/2", 2},
		{"a later retry replaces the retry suffix", "evt-1/retry/2", map[string]any{queue.PropAttempt: 3}, int64(2), "evt-1/retry/3", 3},
		{"no Attempt given counts up from the message's", "evt-1/retry/3", map[string]any{queue.PropFailedStep: "erp"}, "3", "evt-1/retry/4", 4},
		{"a resubmitted chain keeps its resubmit id", "evt-1/resubmit/17", nil, nil, "evt-1/resubmit/17/retry/2", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := testContext(t)
			in := event(tt.id)
			if tt.prevAttempt != nil {
				in.ApplicationProperties[queue.PropAttempt] = tt.prevAttempt
			}
			if err := f.pub.Publish(ctx, in); err != nil {
				t.Fatal(err)
			}
			m := receiveOne(t, ctx, f.recv)
			at := f.clock.now().Add(30 * time.Second)
			if err := f.recv.Reschedule(ctx, m, at, tt.props); err != nil {
				t.Fatalf("Reschedule: %v", err)
			}

			active, _ := f.broker.state(mainQueue)
			if len(active) != 1 {
				t.Fatalf("queue holds %d messages, want only the scheduled copy", len(active))
			}
			c := active[0]
			if c.MessageID != tt.wantID {
				t.Errorf("copy MessageID = %q, want %q", c.MessageID, tt.wantID)
			}
			if c.ApplicationProperties[queue.PropAttempt] != tt.wantAttempt {
				t.Errorf("copy Attempt = %#v, want %d", c.ApplicationProperties[queue.PropAttempt], tt.wantAttempt)
			}
			for k, v := range tt.props {
				if k != queue.PropAttempt && c.ApplicationProperties[k] != v {
					t.Errorf("copy property %s = %v, want %v merged in", k, c.ApplicationProperties[k], v)
				}
			}
			if c.ApplicationProperties[queue.PropEntity] != "opportunity" || deref(c.CorrelationID) != "corr-"+tt.id || string(c.Body) != string(in.Body) {
				t.Errorf("copy lost the original's body, correlation or properties: %+v", c)
			}
			if c.State != azservicebus.MessageStateScheduled || c.ScheduledEnqueueTime == nil || !c.ScheduledEnqueueTime.Equal(at) {
				t.Errorf("copy state %v scheduled %v, want scheduled at %v", c.State, c.ScheduledEnqueueTime, at)
			}

			early, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer cancel()
			if got, err := f.recv.Receive(early, 1); err == nil {
				t.Fatalf("received %v before its schedule", got[0].MessageID)
			}
			f.clock.advance(31 * time.Second)
			due := receiveOne(t, ctx, f.recv)
			if due.MessageID != tt.wantID || due.DeliveryCount != 1 {
				t.Errorf("due copy %s with count %d, want %s with count 1 (a fresh chain)", due.MessageID, due.DeliveryCount, tt.wantID)
			}
		})
	}
}

func TestReceiver_reschedule_leaves_the_original_locked_when_the_send_fails(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.pub.Publish(ctx, event("evt-1")); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, ctx, f.recv)
	down := &azservicebus.Error{Code: azservicebus.CodeConnectionLost}
	f.retrySend.onSend = func(context.Context, *azservicebus.Message) error { return down }

	err := f.recv.Reschedule(ctx, m, f.clock.now().Add(time.Minute), nil)
	var sbErr *azservicebus.Error
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeConnectionLost {
		t.Fatalf("Reschedule error = %v, want the send error", err)
	}
	if completes, _ := f.mainRecv.counts(); completes != 0 {
		t.Errorf("the original was completed %d times, want never", completes)
	}
	if err := f.recv.Abandon(ctx, m); err != nil {
		t.Fatalf("the original is no longer locked by us: %v", err)
	}
	again := receiveOne(t, ctx, f.recv)
	if again.MessageID != "evt-1" || again.DeliveryCount != 2 {
		t.Errorf("redelivered %s with count %d, want evt-1 with count 2", again.MessageID, again.DeliveryCount)
	}
}

func TestReceiver_dead_letters_with_reason_into_the_shared_dead_letter_queue(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.pub.Publish(ctx, event("evt-1")); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, ctx, f.recv)
	if err := f.recv.DeadLetterReceived(ctx, m, "PermanentFailure", "ERP answered 400"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}
	parked, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 {
		t.Fatalf("dead-letter queue holds %d, want 1", len(parked))
	}
	if p := parked[0]; p.MessageID != "evt-1" || p.Reason != "PermanentFailure" || p.Description != "ERP answered 400" {
		t.Errorf("parked = %+v", p)
	}
}

func TestDeadLetterQueue_parks_a_copy_with_reason_and_the_callers_properties(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	m := event("evt-1/retry/3")
	m.ScheduledEnqueueTime = f.clock.now().Add(time.Hour)
	m.ApplicationProperties[queue.PropFailedStep] = "erp"
	m.ApplicationProperties[queue.PropOriginalMessageID] = "evt-1/retry/3"
	m.ApplicationProperties[queue.PropOriginalDeliveryCount] = int64(4)

	if err := f.dlq.DeadLetter(ctx, m, "MaxAttemptsExceeded", "ERP unavailable for 5 attempts"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if _, ok := m.ApplicationProperties[queue.PropDeadLetterReason]; ok {
		t.Error("DeadLetter wrote into the caller's property map")
	}
	sent := f.parkSend.messages()
	if len(sent) != 1 {
		t.Fatalf("sent %d messages to the dead-letter queue, want 1", len(sent))
	}
	c := sent[0]
	checkPtr(t, "MessageID", c.MessageID, "evt-1/retry/3")
	checkPtr(t, "CorrelationID", c.CorrelationID, "corr-evt-1/retry/3")
	if c.ScheduledEnqueueTime != nil {
		t.Errorf("parked copy is scheduled for %v, want now", c.ScheduledEnqueueTime)
	}
	want := map[string]any{
		queue.PropDeadLetterReason:           "MaxAttemptsExceeded",
		queue.PropDeadLetterErrorDescription: "ERP unavailable for 5 attempts",
		queue.PropFailedStep:                 "erp",
		queue.PropOriginalMessageID:          "evt-1/retry/3",
		queue.PropOriginalDeliveryCount:      int64(4),
		queue.PropEntity:                     "opportunity",
	}
	for k, v := range want {
		if c.ApplicationProperties[k] != v {
			t.Errorf("property %s = %#v, want %#v", k, c.ApplicationProperties[k], v)
		}
	}

	parked, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].Reason != "MaxAttemptsExceeded" || parked[0].DeliveryCount != 4 {
		t.Errorf("listed %+v, want one entry with the reason and the original delivery count 4", parked)
	}
}

func TestDeadLetterQueue_parking_the_same_delivery_twice_keeps_one_entry(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	for range 2 {
		if err := f.dlq.DeadLetter(ctx, event("evt-1"), "PermanentFailure", "record gone"); err != nil {
			t.Fatal(err)
		}
	}
	parked, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 {
		t.Errorf("dead-letter queue holds %d entries, want 1", len(parked))
	}
}

func TestDeadLetterQueue_lists_from_the_start_every_time_and_honours_the_limit(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	const n = 300 // more than one peek page
	for i := range n {
		if err := f.dlq.DeadLetter(ctx, event("evt-"+strconv.Itoa(i)), "PermanentFailure", "x"); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{5, n, n + 10} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			for round := range 2 {
				got, err := f.dlq.ListDeadLetters(ctx, limit)
				if err != nil {
					t.Fatal(err)
				}
				if want := min(limit, n); len(got) != want {
					t.Fatalf("round %d listed %d, want %d", round, len(got), want)
				}
				if got[0].MessageID != "evt-0" || got[0].SequenceNumber != 1 {
					t.Errorf("round %d starts at %s (seq %d), want evt-0 (seq 1)", round, got[0].MessageID, got[0].SequenceNumber)
				}
			}
		})
	}
}

func TestDeadLetterQueue_resubmits_with_a_new_id_and_the_dead_letter_properties_removed(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	// The main queue saw evt-2 a minute ago: a copy with the same MessageID would be dropped.
	if err := f.pub.Publish(ctx, event("evt-2")); err != nil {
		t.Fatal(err)
	}
	first := receiveOne(t, ctx, f.recv)
	if err := f.recv.Complete(ctx, first); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"evt-1", "evt-2/retry/5", "evt-3"} {
		m := event(id)
		m.ApplicationProperties[queue.PropAttempt] = int64(5)
		m.ApplicationProperties[queue.PropFailedStep] = "erp"
		m.ApplicationProperties[queue.PropOriginalMessageID] = id
		m.ApplicationProperties[queue.PropOriginalDeliveryCount] = int64(1)
		m.ApplicationProperties[queue.PropDeadLetterReason] = "MaxAttemptsExceeded"
		m.ApplicationProperties[queue.PropDeadLetterErrorDescription] = "ERP down"
		wire, err := toSDKMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		wire.TimeToLive = ptr(time.Hour) // a message TTL must not follow it back
		if err := f.parkSend.SendMessage(ctx, wire, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.advance(time.Minute)
	parked, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil || len(parked) != 3 {
		t.Fatalf("listed %d (%v), want 3", len(parked), err)
	}
	target := parked[1]

	newID, err := f.dlq.Resubmit(ctx, target.SequenceNumber)
	if err != nil {
		t.Fatalf("Resubmit: %v", err)
	}
	want := "evt-2/resubmit/" + strconv.FormatInt(f.clock.now().UnixNano(), 10)
	if newID != want {
		t.Errorf("new MessageID = %q, want %q", newID, want)
	}

	got := receiveOne(t, ctx, f.recv)
	if got.MessageID != newID {
		t.Fatalf("main queue delivered %q, want the resubmitted %q", got.MessageID, newID)
	}
	for _, k := range []string{queue.PropDeadLetterReason, queue.PropDeadLetterErrorDescription, queue.PropFailedStep,
		queue.PropOriginalMessageID, queue.PropOriginalDeliveryCount, queue.PropAttempt} {
		if v, ok := got.ApplicationProperties[k]; ok {
			t.Errorf("resubmitted message still has %s = %v", k, v)
		}
	}
	if got.ApplicationProperties[queue.PropEntity] != "opportunity" || got.CorrelationID != "corr-evt-2/retry/5" || got.Subject != "OpportunityUpdated" {
		t.Errorf("resubmitted message lost the event's own fields: %+v", got.Message)
	}
	sent := f.resubmit.messages()
	if len(sent) != 1 || sent[0].TimeToLive != nil || sent[0].ScheduledEnqueueTime != nil {
		t.Errorf("resubmitted copy keeps a TTL or schedule: %+v", sent)
	}

	rest, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 2 || rest[0].MessageID != "evt-1" || rest[1].MessageID != "evt-3" {
		t.Fatalf("dead-letter queue after resubmit = %v, want evt-1 and evt-3", ids(rest))
	}
	// The messages received on the way are unlocked again, not hidden until their locks expire.
	if _, abandons := f.dlqRecv.counts(); abandons != 2 {
		t.Errorf("abandoned %d passed-over messages, want 2", abandons)
	}
	if active, _ := f.broker.state(dlqQueue); len(active) != 2 || active[0].LockedUntil != nil || active[1].LockedUntil != nil {
		t.Errorf("dead-letter queue messages still locked after resubmit")
	}
}

func ids(ds []queue.DeadLettered) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.MessageID)
	}
	return out
}

func TestDeadLetterQueue_resubmit_of_an_unknown_sequence_number_is_not_found_and_changes_nothing(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.dlq.DeadLetter(ctx, event("evt-1"), "PermanentFailure", "x"); err != nil {
		t.Fatal(err)
	}
	_, err := f.dlq.Resubmit(ctx, 42)
	if !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Resubmit error = %v, want queue.ErrNotFound", err)
	}
	if n := len(f.resubmit.messages()); n != 0 {
		t.Errorf("sent %d messages to the main queue, want none", n)
	}
	if active, _ := f.broker.state(dlqQueue); len(active) != 1 || active[0].LockedUntil != nil {
		t.Errorf("dead-letter queue = %d messages (locked: %v), want evt-1 unlocked", len(active), active[0].LockedUntil != nil)
	}
}

func TestDeadLetterQueue_resubmit_keeps_the_dead_letter_when_the_send_fails(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.dlq.DeadLetter(ctx, event("evt-1"), "PermanentFailure", "x"); err != nil {
		t.Fatal(err)
	}
	down := &azservicebus.Error{Code: azservicebus.CodeConnectionLost}
	f.resubmit.onSend = func(context.Context, *azservicebus.Message) error { return down }

	if _, err := f.dlq.Resubmit(ctx, 1); !errors.As(err, new(*azservicebus.Error)) {
		t.Fatalf("Resubmit error = %v, want the send error", err)
	}
	if completes, _ := f.dlqRecv.counts(); completes != 0 {
		t.Errorf("dead letter completed %d times, want never", completes)
	}
	if active, _ := f.broker.state(dlqQueue); len(active) != 1 || active[0].LockedUntil != nil {
		t.Errorf("dead letter gone or still locked after a failed resubmit")
	}
}

func TestDeadLetterQueue_resubmit_reports_the_new_id_when_the_removal_fails(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	if err := f.dlq.DeadLetter(ctx, event("evt-1"), "PermanentFailure", "x"); err != nil {
		t.Fatal(err)
	}
	f.dlqRecv.onComplete = func(*azservicebus.ReceivedMessage) error {
		return &azservicebus.Error{Code: azservicebus.CodeLockLost}
	}
	newID, err := f.dlq.Resubmit(ctx, 1)
	if err == nil || !errors.Is(err, queue.ErrLockLost) {
		t.Fatalf("Resubmit error = %v, want lock lost", err)
	}
	if newID == "" || len(f.resubmit.messages()) != 1 {
		t.Errorf("new id %q and %d sends, want the id of the one copy that was sent", newID, len(f.resubmit.messages()))
	}
}

func TestDeadLetterQueue_resubmit_releases_the_locks_it_took_when_its_context_ends(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	for _, id := range []string{"evt-1", "evt-2"} {
		if err := f.dlq.DeadLetter(ctx, event(id), "PermanentFailure", "x"); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.dlq.Resubmit(cancelled, 99); !errors.Is(err, context.Canceled) {
		t.Fatalf("Resubmit error = %v, want context.Canceled", err)
	}
	active, _ := f.broker.state(dlqQueue)
	for _, m := range active {
		if m.LockedUntil != nil {
			t.Errorf("%s is still locked after Resubmit gave up", m.MessageID)
		}
	}
}

func TestDeadLetterQueue_purge_removes_only_the_named_dead_letter(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	for _, id := range []string{"evt-1", "evt-2", "evt-3"} {
		if err := f.dlq.DeadLetter(ctx, event(id), "PermanentFailure", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.dlq.PurgeDeadLetter(ctx, 2); err != nil {
		t.Fatalf("PurgeDeadLetter: %v", err)
	}
	rest, err := f.dlq.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(rest); len(got) != 2 || got[0] != "evt-1" || got[1] != "evt-3" {
		t.Errorf("dead letters after purge = %v, want evt-1 and evt-3", got)
	}
	if n := len(f.resubmit.messages()); n != 0 {
		t.Errorf("purge sent %d messages to the main queue, want none", n)
	}
	if err := f.dlq.PurgeDeadLetter(ctx, 2); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second purge = %v, want queue.ErrNotFound", err)
	}
}

// The consumer renews locks of messages in flight while its loop keeps receiving: the two must
// not race on the received message the SDK updates in place.
func TestReceiver_renews_locks_while_it_receives_more_without_a_data_race(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	for i := range 21 {
		if err := f.pub.Publish(ctx, event("evt-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	held := receiveOne(t, ctx, f.recv)
	renewed := make(chan error, 1)
	go func() {
		for range 50 {
			if err := f.recv.RenewLock(ctx, held); err != nil {
				renewed <- err
				return
			}
		}
		renewed <- nil
	}()
	for range 20 {
		receiveOne(t, ctx, f.recv)
	}
	if err := <-renewed; err != nil {
		t.Fatalf("RenewLock: %v", err)
	}
	if err := f.recv.Complete(ctx, held); err != nil {
		t.Fatalf("Complete after renewals: %v", err)
	}
}
