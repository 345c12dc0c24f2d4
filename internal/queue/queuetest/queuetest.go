// Package queuetest is the contract every queue backend keeps: one suite, run against the
// embedded SQLite queue and against the Service Bus backend's in-memory broker double, so the
// worker sees the same semantics in standalone and Functions mode, and its outcomes leave the
// same messages and dead letters behind whichever Settler applied them.
package queuetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// The settings a Backend under test must be configured with. The suite drives time through
// Backend.Advance, so the durations never cost wall-clock time.
const (
	LockDuration     = 30 * time.Second
	MaxDeliveryCount = 3
	DuplicateWindow  = 10 * time.Minute
)

// Backend is a queue under test.
//
// Spec:
//   - It is empty when newBackend returns it, and configured with LockDuration,
//     MaxDeliveryCount and DuplicateWindow from this package.
//   - Its clock is manual: Now reports it, Advance moves it forward by d. Lock expiry, scheduled
//     times and the duplicate window are measured against it and against nothing else.
//   - Receive waits until a message is available; if ctx ends first it returns ctx.Err().
//     Calling Receive after Advance must see whatever the move made available.
//   - Delivery counts follow Service Bus: 1 on the first delivery, +1 per abandon or expired lock;
//     the delivery after which the count reaches MaxDeliveryCount is the last one, and its abandon
//     or lock expiry dead-letters the message with reason MaxDeliveryCountExceeded.
//   - ListDeadLetters returns parked messages oldest first, with reason and description both in
//     the fields and as the DeadLetterReason / DeadLetterErrorDescription application properties.
//   - ApplicationProperties come back with integers as int64 and other numbers as float64.
//   - Settle applies the worker's outcome to a message received from it (queue.Settler's
//     contract); Resubmit and PurgeDeadLetter take a dead letter's sequence number and fail
//     with queue.ErrNotFound when nothing is parked under it.
//   - QueryDeadLetters selects as queue.DeadLetterFilter.Match does, and History names the
//     event's ids in chain order (queue.DeadLetterAdmin's contract).
type Backend interface {
	queue.Publisher
	queue.DeadLetterer
	queue.Receiver
	queue.Settler
	queue.DeadLetterAdmin
	ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error)
	Now() time.Time
	Advance(d time.Duration)
}

// quiet is how long "nothing arrives" is watched for. It is real time, so keep it short: a
// backend that wrongly delivers does so at once, because the clock does not move meanwhile.
const quiet = 150 * time.Millisecond

// patience bounds every wait for something that should arrive.
const patience = 10 * time.Second

// Run runs the contract suite. newBackend is called once per case.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	cases := []struct {
		name string
		run  func(t *testing.T, b Backend)
	}{
		{"publish_then_receive_gets_body_and_properties", publishThenReceive},
		{"receive_waits_for_a_publish", receiveWaitsForPublish},
		{"receive_returns_ctx_error_when_nothing_arrives", receiveHonoursContext},
		{"receive_takes_at_most_max_messages", receiveTakesAtMostMax},
		{"duplicate_message_id_is_dropped", duplicateDropped},
		{"duplicate_of_a_scheduled_message_is_dropped", duplicateOfScheduledDropped},
		{"message_id_is_accepted_again_after_the_window", duplicateWindowEnds},
		{"lock_expiry_redelivers_with_count_raised", lockExpiryRedelivers},
		{"abandon_redelivers_with_count_raised", abandonRedelivers},
		{"max_delivery_count_dead_letters_on_abandon", func(t *testing.T, b Backend) { maxDeliveries(t, b, abandonIt) }},
		{"max_delivery_count_dead_letters_on_lock_expiry", func(t *testing.T, b Backend) { maxDeliveries(t, b, expireIt) }},
		{"scheduled_message_is_hidden_until_its_time", scheduledHidden},
		{"reschedule_makes_it_due_later_with_props_merged", rescheduleLater},
		{"dead_letter_received_keeps_reason_and_description", deadLetterReceived},
		{"dead_letter_parks_a_new_message", deadLetterDirect},
		{"settle_with_a_stale_lock_fails_with_lock_lost", staleLock},
		{"settle_with_an_unknown_lock_fails_with_lock_lost", unknownLock},
		{"renew_lock_keeps_the_message_locked", renewLock},
		{"complete_removes_the_message", completeRemoves},
		{"settle_after_the_lock_expired_fails_with_lock_lost", settleStaleLock},
		{"resubmit_sends_a_dead_letter_back_as_a_new_chain", resubmit},
		{"purge_removes_only_the_named_dead_letter", purge},
		{"unknown_dead_letter_is_not_found", unknownDeadLetter},
		{"query_dead_letters_filters_by_reason_entity_time_event_and_sequence", queryDeadLetters},
		{"history_names_the_retries_and_resubmits_of_an_event", history},
	}
	cases = append(cases, settleCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newBackend(t))
		})
	}
}

// settleCases are the promises of queue.Settler, which hold in every mode: whether the receiver
// settles (`handler serve`) or the Functions host does once the handler answered.
var settleCases = []struct {
	name string
	run  func(t *testing.T, b Backend)
}{
	{"settle_complete_removes_the_message", settleComplete},
	{"settle_retry_later_schedules_the_next_attempt_under_a_retry_id", settleRetryLater},
	{"settle_dead_letter_records_why_and_where", settleDeadLetter},
}

// RunSettle runs only the Settle cases, for a second Settler over the same backend: the one the
// Functions trigger uses, where the host completes the message after Settle returned nil (the
// Backend's Settle must do that too, standing in for the host).
func RunSettle(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, c := range settleCases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newBackend(t))
		})
	}
}

func publishThenReceive(t *testing.T, b Backend) {
	at := time.Date(2026, 11, 25, 6, 0, 0, 123000000, time.UTC)
	m := &queue.Message{
		MessageID:     "evt-1",
		CorrelationID: "corr-1",
		Subject:       "OpportunityUpdated",
		SessionID:     "rec-1",
		ContentType:   "application/json",
		Body:          []byte(`{"EventId":"evt-1"}`),
		ApplicationProperties: map[string]any{
			queue.PropAttempt:   int64(1),
			queue.PropEventName: "OpportunityUpdated",
			"Flag":              true,
			"Ratio":             0.5,
			"At":                at,
		},
	}
	publish(t, b, m)
	r := receiveOne(t, b)

	if r.MessageID != m.MessageID || r.CorrelationID != m.CorrelationID || r.Subject != m.Subject ||
		r.SessionID != m.SessionID || r.ContentType != m.ContentType || string(r.Body) != string(m.Body) {
		t.Errorf("received %+v, want the published fields of %+v", r.Message, *m)
	}
	for k, want := range m.ApplicationProperties {
		got := r.ApplicationProperties[k]
		if wt, ok := want.(time.Time); ok {
			if gt, ok := got.(time.Time); !ok || !gt.Equal(wt) {
				t.Errorf("property %s = %#v, want %v", k, got, wt)
			}
			continue
		}
		if got != want {
			t.Errorf("property %s = %#v (%T), want %#v (%T)", k, got, got, want, want)
		}
	}
	if r.DeliveryCount != 1 {
		t.Errorf("DeliveryCount = %d, want 1 on the first delivery", r.DeliveryCount)
	}
	if r.LockToken == "" {
		t.Error("LockToken is empty")
	}
	if !r.LockedUntil.After(b.Now()) {
		t.Errorf("LockedUntil = %v, want after now (%v)", r.LockedUntil, b.Now())
	}
	complete(t, b, r)
}

func receiveWaitsForPublish(t *testing.T, b Backend) {
	type result struct {
		got []*queue.Received
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	go func() {
		got, err := b.Receive(ctx, 1)
		done <- result{got, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Receive returned before anything was published: %v, %v", r.got, r.err)
	case <-time.After(quiet):
	}
	publish(t, b, message("late"))
	r := <-done
	if r.err != nil || len(r.got) != 1 || r.got[0].MessageID != "late" {
		t.Fatalf("Receive = %v, %v; want the message published while it waited", r.got, r.err)
	}
}

func receiveHonoursContext(t *testing.T, b Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	got, err := b.Receive(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) || len(got) != 0 {
		t.Fatalf("Receive on an empty queue = %v, %v; want no messages and context.DeadlineExceeded", got, err)
	}
}

func receiveTakesAtMostMax(t *testing.T, b Backend) {
	for _, id := range []string{"m1", "m2", "m3"} {
		publish(t, b, message(id))
	}
	got := receive(t, b, 2)
	if len(got) == 0 || len(got) > 2 {
		t.Fatalf("Receive(max 2) returned %d messages", len(got))
	}
	seen := len(got)
	for seen < 3 {
		seen += len(receive(t, b, 3))
	}
	if seen != 3 {
		t.Fatalf("received %d messages in all, want 3", seen)
	}
	expectNone(t, b)
}

func duplicateDropped(t *testing.T, b Backend) {
	publish(t, b, message("dup"))
	second := message("dup")
	second.Body = []byte(`{"second":true}`)
	publish(t, b, second) // accepted, as Service Bus accepts a duplicate send
	r := receiveOne(t, b)
	if string(r.Body) != string(message("dup").Body) {
		t.Errorf("received body %s, want the first publish's", r.Body)
	}
	complete(t, b, r)
	expectNone(t, b)
}

func duplicateOfScheduledDropped(t *testing.T, b Backend) {
	scheduled := message("sched-dup")
	scheduled.ScheduledEnqueueTime = b.Now().Add(time.Minute)
	publish(t, b, scheduled)
	publish(t, b, message("sched-dup"))
	expectNone(t, b)
	b.Advance(2 * time.Minute)
	complete(t, b, receiveOne(t, b))
	expectNone(t, b)
}

func duplicateWindowEnds(t *testing.T, b Backend) {
	publish(t, b, message("again"))
	complete(t, b, receiveOne(t, b))
	b.Advance(DuplicateWindow + time.Minute)
	publish(t, b, message("again"))
	if r := receiveOne(t, b); r.MessageID != "again" {
		t.Fatalf("received %s, want the re-published message", r.MessageID)
	}
}

func lockExpiryRedelivers(t *testing.T, b Backend) {
	publish(t, b, message("slow"))
	first := receiveOne(t, b)
	expectNone(t, b) // locked: invisible to other receivers
	b.Advance(LockDuration + time.Second)
	second := receiveOne(t, b)
	if second.MessageID != "slow" || second.DeliveryCount != 2 {
		t.Fatalf("after lock expiry got %s with DeliveryCount %d, want slow with 2", second.MessageID, second.DeliveryCount)
	}
	if second.LockToken == first.LockToken {
		t.Error("redelivery reused the expired lock token")
	}
	complete(t, b, second)
}

func abandonRedelivers(t *testing.T, b Backend) {
	publish(t, b, message("flaky"))
	first := receiveOne(t, b)
	if err := b.Abandon(context.Background(), first); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	second := receiveOne(t, b) // back at once, no clock move
	if second.DeliveryCount != 2 {
		t.Fatalf("DeliveryCount after abandon = %d, want 2", second.DeliveryCount)
	}
	complete(t, b, second)
}

type failDelivery func(t *testing.T, b Backend, r *queue.Received)

func abandonIt(t *testing.T, b Backend, r *queue.Received) {
	t.Helper()
	if err := b.Abandon(context.Background(), r); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
}

func expireIt(t *testing.T, b Backend, _ *queue.Received) {
	b.Advance(LockDuration + time.Second)
}

func maxDeliveries(t *testing.T, b Backend, fail failDelivery) {
	publish(t, b, message("poison"))
	for n := 1; n <= MaxDeliveryCount; n++ {
		r := receiveOne(t, b)
		if r.DeliveryCount != n {
			t.Fatalf("delivery %d has DeliveryCount %d", n, r.DeliveryCount)
		}
		fail(t, b, r)
	}
	expectNone(t, b)
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	d := dl[0]
	if d.MessageID != "poison" || d.Reason != queue.ReasonMaxDeliveryCountExceeded {
		t.Errorf("dead letter %s reason %q, want poison with MaxDeliveryCountExceeded", d.MessageID, d.Reason)
	}
	if d.DeliveryCount != MaxDeliveryCount {
		t.Errorf("dead letter DeliveryCount = %d, want %d", d.DeliveryCount, MaxDeliveryCount)
	}
	if d.ApplicationProperties[queue.PropDeadLetterReason] != queue.ReasonMaxDeliveryCountExceeded {
		t.Errorf("DeadLetterReason property = %#v", d.ApplicationProperties[queue.PropDeadLetterReason])
	}
}

func scheduledHidden(t *testing.T, b Backend) {
	m := message("later")
	m.ScheduledEnqueueTime = b.Now().Add(5 * time.Minute)
	publish(t, b, m)
	expectNone(t, b)
	b.Advance(4 * time.Minute)
	expectNone(t, b)
	b.Advance(2 * time.Minute)
	r := receiveOne(t, b)
	if r.MessageID != "later" || r.DeliveryCount != 1 {
		t.Fatalf("got %s with DeliveryCount %d, want later with 1", r.MessageID, r.DeliveryCount)
	}
}

func rescheduleLater(t *testing.T, b Backend) {
	m := message("retry")
	m.ApplicationProperties = map[string]any{queue.PropAttempt: int64(1), queue.PropEventName: "OpportunityUpdated"}
	publish(t, b, m)
	r := receiveOne(t, b)
	if err := b.Abandon(context.Background(), r); err != nil { // a raised count must not carry over
		t.Fatalf("Abandon: %v", err)
	}
	r = receiveOne(t, b)
	at := b.Now().Add(10 * time.Minute)
	if err := b.Reschedule(context.Background(), r, at, map[string]any{queue.PropAttempt: int64(2)}); err != nil {
		t.Fatalf("Reschedule: %v", err)
	}
	expectNone(t, b)
	b.Advance(9 * time.Minute)
	expectNone(t, b)
	b.Advance(2 * time.Minute)
	again := receiveOne(t, b)
	if string(again.Body) != string(m.Body) || again.CorrelationID != m.CorrelationID {
		t.Errorf("rescheduled message = %+v, want the same event", again.Message)
	}
	if again.DeliveryCount != 1 {
		t.Errorf("DeliveryCount = %d, want 1: a reschedule starts a fresh chain", again.DeliveryCount)
	}
	if got := again.ApplicationProperties[queue.PropAttempt]; got != int64(2) {
		t.Errorf("Attempt = %#v, want int64(2)", got)
	}
	if got := again.ApplicationProperties[queue.PropEventName]; got != "OpportunityUpdated" {
		t.Errorf("EventName = %#v, want the original property kept", got)
	}
	complete(t, b, again)
}

func deadLetterReceived(t *testing.T, b Backend) {
	publish(t, b, message("bad"))
	r := receiveOne(t, b)
	if err := b.DeadLetterReceived(context.Background(), r, "PermanentFailure", "erp answered 422"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}
	expectNone(t, b)
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	checkDeadLetter(t, dl[0], "bad", "PermanentFailure", "erp answered 422")
	if string(dl[0].Body) != string(message("bad").Body) {
		t.Errorf("dead letter body = %s", dl[0].Body)
	}
}

func deadLetterDirect(t *testing.T, b Backend) {
	if err := b.DeadLetter(context.Background(), message("parked"), "InvalidMessage", "body is not an event"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	expectNone(t, b)
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	checkDeadLetter(t, dl[0], "parked", "InvalidMessage", "body is not an event")
}

func checkDeadLetter(t *testing.T, d queue.DeadLettered, id, reason, description string) {
	t.Helper()
	if d.MessageID != id || d.Reason != reason || d.Description != description {
		t.Errorf("dead letter = %s %q %q, want %s %q %q", d.MessageID, d.Reason, d.Description, id, reason, description)
	}
	if d.ApplicationProperties[queue.PropDeadLetterReason] != reason ||
		d.ApplicationProperties[queue.PropDeadLetterErrorDescription] != description {
		t.Errorf("dead letter properties = %v, want reason and description in them", d.ApplicationProperties)
	}
}

func staleLock(t *testing.T, b Backend) {
	settlements := []struct {
		name   string
		settle func(ctx context.Context, r *queue.Received) error
	}{
		{"complete", b.Complete},
		{"abandon", b.Abandon},
		{"renew", b.RenewLock},
		{"reschedule", func(ctx context.Context, r *queue.Received) error {
			return b.Reschedule(ctx, r, b.Now().Add(time.Minute), map[string]any{queue.PropAttempt: int64(2)})
		}},
		{"dead-letter", func(ctx context.Context, r *queue.Received) error {
			return b.DeadLetterReceived(ctx, r, "PermanentFailure", "x")
		}},
	}
	for _, s := range settlements {
		t.Run(s.name, func(t *testing.T) {
			publish(t, b, message("stale-"+s.name))
			r := receiveOne(t, b)
			b.Advance(LockDuration + time.Second)
			if err := s.settle(context.Background(), r); !errors.Is(err, queue.ErrLockLost) {
				t.Fatalf("%s after lock expiry = %v, want queue.ErrLockLost", s.name, err)
			}
			again := receiveOne(t, b) // still there, delivered again
			if again.MessageID != r.MessageID {
				t.Fatalf("got %s, want %s back", again.MessageID, r.MessageID)
			}
			complete(t, b, again)
		})
	}
}

func unknownLock(t *testing.T, b Backend) {
	publish(t, b, message("known"))
	r := receiveOne(t, b)
	forged := *r
	forged.LockToken = "00000000000000000000000000000000"
	if err := b.Complete(context.Background(), &forged); !errors.Is(err, queue.ErrLockLost) {
		t.Fatalf("Complete with an unknown token = %v, want queue.ErrLockLost", err)
	}
	complete(t, b, r)
}

func renewLock(t *testing.T, b Backend) {
	publish(t, b, message("long"))
	r := receiveOne(t, b)
	before := r.LockedUntil
	b.Advance(LockDuration * 2 / 3)
	if err := b.RenewLock(context.Background(), r); err != nil {
		t.Fatalf("RenewLock: %v", err)
	}
	if !r.LockedUntil.After(before) {
		t.Errorf("LockedUntil = %v after renew, want later than %v", r.LockedUntil, before)
	}
	b.Advance(LockDuration * 2 / 3) // past the first lock's end, inside the renewed one
	expectNone(t, b)
	complete(t, b, r)
}

func completeRemoves(t *testing.T, b Backend) {
	publish(t, b, message("done"))
	complete(t, b, receiveOne(t, b))
	b.Advance(2 * LockDuration)
	expectNone(t, b)
	if dl := deadLetters(t, b); len(dl) != 0 {
		t.Fatalf("dead letters = %d after complete, want 0", len(dl))
	}
}

func settleComplete(t *testing.T, b Backend) {
	publish(t, b, message("settled"))
	settle(t, b, receiveOne(t, b), queue.Outcome{Kind: queue.Complete, EventID: "settled"})
	b.Advance(2 * LockDuration)
	expectNone(t, b)
	if dl := deadLetters(t, b); len(dl) != 0 {
		t.Fatalf("dead letters = %d after a complete outcome, want 0", len(dl))
	}
}

func settleRetryLater(t *testing.T, b Backend) {
	m := message("evt-rl")
	m.ApplicationProperties = map[string]any{queue.PropEventName: "OpportunityUpdated"}
	publish(t, b, m)
	settle(t, b, receiveOne(t, b), queue.Outcome{Kind: queue.RetryLater, RetryAt: b.Now().Add(10 * time.Minute), Attempt: 2, EventID: "evt-rl"})
	expectNone(t, b)
	b.Advance(9 * time.Minute)
	expectNone(t, b)
	b.Advance(2 * time.Minute)

	for _, want := range []struct {
		id      string
		attempt int64
	}{{"evt-rl/retry/2", 2}, {"evt-rl/retry/3", 3}} {
		r := receiveOne(t, b)
		if r.MessageID != want.id || r.DeliveryCount != 1 {
			t.Fatalf("retry is %s with DeliveryCount %d, want %s with 1 (a fresh chain named after the first message)",
				r.MessageID, r.DeliveryCount, want.id)
		}
		if got := r.ApplicationProperties[queue.PropAttempt]; got != want.attempt {
			t.Errorf("Attempt = %#v, want int64(%d)", got, want.attempt)
		}
		if got := r.ApplicationProperties[queue.PropEventName]; got != "OpportunityUpdated" {
			t.Errorf("EventName = %#v, want the original property kept", got)
		}
		if string(r.Body) != string(m.Body) || r.CorrelationID != m.CorrelationID {
			t.Errorf("retry = %+v, want the same event", r.Message)
		}
		if want.attempt == 3 {
			settle(t, b, r, queue.Outcome{Kind: queue.Complete})
			break
		}
		settle(t, b, r, queue.Outcome{Kind: queue.RetryLater, RetryAt: b.Now().Add(time.Minute), Attempt: 3, EventID: "evt-rl"})
		b.Advance(2 * time.Minute)
	}
	expectNone(t, b)
}

func settleDeadLetter(t *testing.T, b Backend) {
	m := message("evt-dl/retry/2")
	m.ApplicationProperties = map[string]any{queue.PropAttempt: int64(2), queue.PropEventName: "OpportunityUpdated"}
	publish(t, b, m)
	if err := b.Abandon(context.Background(), receiveOne(t, b)); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	r := receiveOne(t, b) // the second delivery
	const description = "attempt 2 of 2 failed: route sync step erp: erp answered 503"
	settle(t, b, r, queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonMaxAttemptsExceeded,
		Description: description, Step: "erp", EventID: "evt-dl"})
	expectNone(t, b)

	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	d := dl[0]
	checkDeadLetter(t, d, "evt-dl/retry/2", queue.ReasonMaxAttemptsExceeded, description)
	if d.DeliveryCount != 2 || string(d.Body) != string(m.Body) {
		t.Errorf("dead letter DeliveryCount %d body %s, want 2 and the event", d.DeliveryCount, d.Body)
	}
	want := map[string]any{
		queue.PropFailedStep:            "erp",
		queue.PropOriginalMessageID:     "evt-dl/retry/2",
		queue.PropOriginalDeliveryCount: int64(2),
		queue.PropAttempt:               int64(2),
		queue.PropEventName:             "OpportunityUpdated",
	}
	for k, v := range want {
		if got := d.ApplicationProperties[k]; got != v {
			t.Errorf("dead letter property %s = %#v (%T), want %#v", k, got, got, v)
		}
	}
}

func settleStaleLock(t *testing.T, b Backend) {
	outcomes := []queue.Outcome{
		{Kind: queue.Complete},
		{Kind: queue.RetryLater, RetryAt: b.Now().Add(time.Minute), Attempt: 2},
		{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Description: "x"},
	}
	for _, out := range outcomes {
		t.Run(out.Kind.String(), func(t *testing.T) {
			publish(t, b, message("stale-settle-"+out.Kind.String()))
			r := receiveOne(t, b)
			b.Advance(LockDuration + time.Second)
			out.RetryAt = b.Now().Add(time.Minute)
			if err := b.Settle(context.Background(), queue.DeliveryOf(r), out); !errors.Is(err, queue.ErrLockLost) {
				t.Fatalf("Settle %s after lock expiry = %v, want queue.ErrLockLost", out.Kind, err)
			}
			again := receiveOne(t, b) // still there, delivered again, and nothing else was written
			if again.MessageID != r.MessageID {
				t.Fatalf("got %s, want %s back", again.MessageID, r.MessageID)
			}
			complete(t, b, again)
			b.Advance(2 * time.Minute)
			expectNone(t, b)
			if dl := deadLetters(t, b); len(dl) != 0 {
				t.Fatalf("dead letters = %d after a settlement that failed, want 0", len(dl))
			}
		})
	}
}

func resubmit(t *testing.T, b Backend) {
	m := message("evt-rs/retry/3")
	m.ApplicationProperties = map[string]any{ // as a failed retry's dead letter carries them
		queue.PropAttempt:               int64(3),
		queue.PropFailedStep:            "erp",
		queue.PropOriginalMessageID:     "evt-rs/retry/3",
		queue.PropOriginalDeliveryCount: int64(1),
		queue.PropEventName:             "OpportunityUpdated",
	}
	publish(t, b, m)
	if err := b.DeadLetterReceived(context.Background(), receiveOne(t, b), "PermanentFailure", "route sync step erp: erp answered 422"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	b.Advance(time.Minute) // support looks later, well inside the duplicate window

	id, err := b.Resubmit(context.Background(), dl[0].SequenceNumber)
	if err != nil {
		t.Fatalf("Resubmit: %v", err)
	}
	if !strings.HasPrefix(id, "evt-rs/resubmit/") {
		t.Errorf("resubmitted as %q, want evt-rs/resubmit/<n>: a new id named after the event", id)
	}
	back := receiveOne(t, b)
	if back.MessageID != id || back.DeliveryCount != 1 || string(back.Body) != string(m.Body) || back.CorrelationID != m.CorrelationID {
		t.Errorf("resubmitted message = %s #%d %+v, want %s #1 with the event", back.MessageID, back.DeliveryCount, back.Message, id)
	}
	for _, gone := range []string{queue.PropDeadLetterReason, queue.PropDeadLetterErrorDescription, queue.PropFailedStep,
		queue.PropOriginalDeliveryCount, queue.PropAttempt} {
		if v, ok := back.ApplicationProperties[gone]; ok {
			t.Errorf("resubmitted message still has %s = %#v: it must start a fresh chain", gone, v)
		}
	}
	if got := back.ApplicationProperties[queue.PropEventName]; got != "OpportunityUpdated" {
		t.Errorf("EventName = %#v, want the event's own properties kept", got)
	}
	if dl := deadLetters(t, b); len(dl) != 0 {
		t.Errorf("dead letters = %d after resubmit, want 0", len(dl))
	}
	complete(t, b, back)
}

func purge(t *testing.T, b Backend) {
	for _, id := range []string{"p1", "p2", "p3"} {
		if err := b.DeadLetter(context.Background(), message(id), "PermanentFailure", "x"); err != nil {
			t.Fatalf("DeadLetter %s: %v", id, err)
		}
	}
	dl := deadLetters(t, b)
	if len(dl) != 3 {
		t.Fatalf("dead letters = %d, want 3", len(dl))
	}
	if err := b.PurgeDeadLetter(context.Background(), dl[1].SequenceNumber); err != nil {
		t.Fatalf("PurgeDeadLetter: %v", err)
	}
	rest := deadLetters(t, b)
	if len(rest) != 2 || rest[0].MessageID != "p1" || rest[1].MessageID != "p3" {
		t.Fatalf("dead letters after purge = %+v, want p1 and p3", rest)
	}
	if err := b.PurgeDeadLetter(context.Background(), dl[1].SequenceNumber); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second purge = %v, want queue.ErrNotFound", err)
	}
	expectNone(t, b)
}

func unknownDeadLetter(t *testing.T, b Backend) {
	if err := b.DeadLetter(context.Background(), message("parked"), "PermanentFailure", "x"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	const unknown = 9999
	if _, err := b.Resubmit(context.Background(), unknown); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Resubmit(%d) = %v, want queue.ErrNotFound", unknown, err)
	}
	if err := b.PurgeDeadLetter(context.Background(), unknown); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("PurgeDeadLetter(%d) = %v, want queue.ErrNotFound", unknown, err)
	}
	expectNone(t, b)
	if dl := deadLetters(t, b); len(dl) != 1 || dl[0].MessageID != "parked" {
		t.Errorf("dead letters = %+v, want parked left alone", dl)
	}
}

func queryDeadLetters(t *testing.T, b Backend) {
	park := func(id, reason, entity string) time.Time {
		t.Helper()
		m := message(id)
		m.ApplicationProperties = map[string]any{queue.PropEntity: entity}
		at := b.Now()
		if err := b.DeadLetter(context.Background(), m, reason, "x"); err != nil {
			t.Fatalf("DeadLetter %s: %v", id, err)
		}
		b.Advance(time.Hour)
		return at
	}
	park("evt-q", "PermanentFailure", "opportunity")
	second := park("evt-q/retry/3", "MaxAttemptsExceeded", "account")
	third := park("evt-q/resubmit/2", "PermanentFailure", "Opportunity")
	park("evt-qx", "InvalidMessage", "opportunity")    // another event whose id starts alike
	park("evt-q/other", "PermanentFailure", "contact") // not a retry or resubmit id of evt-q
	all := deadLetters(t, b)
	if len(all) != 5 {
		t.Fatalf("dead letters = %d, want 5", len(all))
	}

	tests := []struct {
		name   string
		filter queue.DeadLetterFilter
		want   []string
	}{
		{"reason, any case", queue.DeadLetterFilter{Reason: "permanentfailure"},
			[]string{"evt-q", "evt-q/resubmit/2", "evt-q/other"}},
		{"entity, any case", queue.DeadLetterFilter{Entity: "OPPORTUNITY"},
			[]string{"evt-q", "evt-q/resubmit/2", "evt-qx"}},
		{"reason and entity", queue.DeadLetterFilter{Reason: "PermanentFailure", Entity: "opportunity"},
			[]string{"evt-q", "evt-q/resubmit/2"}},
		{"since is inclusive", queue.DeadLetterFilter{Since: second},
			[]string{"evt-q/retry/3", "evt-q/resubmit/2", "evt-qx", "evt-q/other"}},
		{"before is exclusive", queue.DeadLetterFilter{Before: third},
			[]string{"evt-q", "evt-q/retry/3"}},
		{"event id: its retries and resubmits only", queue.DeadLetterFilter{EventID: "evt-q"},
			[]string{"evt-q", "evt-q/retry/3", "evt-q/resubmit/2"}},
		{"one sequence number", queue.DeadLetterFilter{Seq: all[3].SequenceNumber},
			[]string{"evt-qx"}},
		{"a page after a sequence number", queue.DeadLetterFilter{AfterSeq: all[1].SequenceNumber, Limit: 2},
			[]string{"evt-q/resubmit/2", "evt-qx"}},
		{"a limit keeps the oldest", queue.DeadLetterFilter{Limit: 1},
			[]string{"evt-q"}},
		{"nothing matches", queue.DeadLetterFilter{Reason: "PermanentFailure", Entity: "account"},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.QueryDeadLetters(context.Background(), tt.filter)
			if err != nil {
				t.Fatalf("QueryDeadLetters: %v", err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.MessageID)
				if !tt.filter.Match(d) {
					t.Errorf("%s was returned but the filter does not match it", d.MessageID)
				}
			}
			if strings.Join(ids, " ") != strings.Join(tt.want, " ") {
				t.Errorf("QueryDeadLetters(%+v) = %q, want %q", tt.filter, ids, tt.want)
			}
		})
	}
}

func history(t *testing.T, b Backend) {
	m := message("evt-h/retry/3")
	m.ApplicationProperties = map[string]any{queue.PropAttempt: int64(3)}
	publish(t, b, m)
	publish(t, b, message("evt-hx")) // another event, whose id starts alike
	if err := b.DeadLetterReceived(context.Background(), receiveOne(t, b), "MaxAttemptsExceeded", "x"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}
	complete(t, b, receiveOne(t, b))
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	got := historyOf(t, b, "evt-h")
	want := []string{"evt-h", "evt-h/retry/2", "evt-h/retry/3"}
	if ids := sightingIDs(got); strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("history = %q, want %q: the attempts the retry id implies, in order", ids, want)
	}
	if last := got[2]; last.State != queue.SeenDeadLettered || last.Seq != dl[0].SequenceNumber || last.Attempt != 3 {
		t.Errorf("history ends with %+v, want attempt 3 dead-lettered as sequence %d", last, dl[0].SequenceNumber)
	}

	id, err := b.Resubmit(context.Background(), dl[0].SequenceNumber)
	if err != nil {
		t.Fatalf("Resubmit: %v", err)
	}
	if err := b.DeadLetterReceived(context.Background(), receiveOne(t, b), "PermanentFailure", "x"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}
	again := deadLetters(t, b)
	got = historyOf(t, b, "evt-h")
	ids := sightingIDs(got)
	if len(ids) < 2 || ids[0] != "evt-h" || ids[len(ids)-1] != id {
		t.Fatalf("history after a resubmit = %q, want it to start at evt-h and end with %s", ids, id)
	}
	if last := got[len(got)-1]; last.State != queue.SeenDeadLettered || last.Seq != again[0].SequenceNumber {
		t.Errorf("history ends with %+v, want %s dead-lettered as sequence %d", last, id, again[0].SequenceNumber)
	}
	for _, s := range got {
		if queue.BaseID(s.MessageID) != "evt-h" {
			t.Errorf("history of evt-h names %s", s.MessageID)
		}
	}
}

func historyOf(t *testing.T, b Backend, eventID string) []queue.Sighting {
	t.Helper()
	got, err := b.History(context.Background(), eventID)
	if err != nil {
		t.Fatalf("History %s: %v", eventID, err)
	}
	return got
}

func sightingIDs(s []queue.Sighting) []string {
	ids := make([]string, 0, len(s))
	for _, x := range s {
		ids = append(ids, x.MessageID)
	}
	return ids
}

// helpers

func settle(t *testing.T, b Backend, r *queue.Received, out queue.Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := b.Settle(ctx, queue.DeliveryOf(r), out); err != nil {
		t.Fatalf("Settle %s as %s: %v", r.MessageID, out.Kind, err)
	}
}

func message(id string) *queue.Message {
	return &queue.Message{
		MessageID:     id,
		CorrelationID: "corr-" + id,
		Subject:       "OpportunityUpdated",
		ContentType:   "application/json",
		Body:          []byte(`{"EventId":"` + id + `"}`),
	}
}

func publish(t *testing.T, b Backend, m *queue.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := b.Publish(ctx, m); err != nil {
		t.Fatalf("Publish %s: %v", m.MessageID, err)
	}
}

func receive(t *testing.T, b Backend, maxMessages int) []*queue.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	got, err := b.Receive(ctx, maxMessages)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return got
}

func receiveOne(t *testing.T, b Backend) *queue.Received {
	t.Helper()
	got := receive(t, b, 1)
	if len(got) != 1 {
		t.Fatalf("Receive(max 1) returned %d messages", len(got))
	}
	return got[0]
}

func expectNone(t *testing.T, b Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	got, err := b.Receive(ctx, 10)
	if len(got) > 0 {
		t.Fatalf("received %s (DeliveryCount %d), want nothing available", got[0].MessageID, got[0].DeliveryCount)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on a queue with nothing available = %v, want context.DeadlineExceeded", err)
	}
}

func complete(t *testing.T, b Backend, r *queue.Received) {
	t.Helper()
	if err := b.Complete(context.Background(), r); err != nil {
		t.Fatalf("Complete %s: %v", r.MessageID, err)
	}
}

func deadLetters(t *testing.T, b Backend) []queue.DeadLettered {
	t.Helper()
	dl, err := b.ListDeadLetters(context.Background(), 100)
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	return dl
}
