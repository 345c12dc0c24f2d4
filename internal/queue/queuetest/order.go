package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// RunOrder runs the per-record order cases (queue.OrderKey's promise): a backend hands out the
// messages of one key one at a time in the order they were published, a retry keeps its place
// and holds the key, dead-lettering releases it, a resubmitted message joins the tail, and
// messages of other keys, or of none, never wait. newBackend is called once per case; its
// backend must order on the key (on Service Bus: a session-enabled queue).
func RunOrder(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, b Backend)
	}{
		{"a_record's_next_message_waits_while_the_first_is_locked", orderWaitsForLocked},
		{"other_records_and_unkeyed_messages_go_on_meanwhile", orderOthersGoOn},
		{"a_retry_keeps_its_place_and_holds_the_record_through_the_back_off", orderRetryKeepsPlace},
		{"an_abandoned_or_expired_message_comes_back_before_its_record's_next", orderAbandonKeepsPlace},
		{"dead_lettering_releases_the_record", orderDeadLetterReleases},
		{"a_resubmitted_message_joins_the_tail_of_its_record", orderResubmitJoinsTail},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, newBackend(t)) })
	}
}

// keyed is a message of the record key. SessionID carries the key too, as the intake writes it
// for a session-enabled queue.
func keyed(id, key string) *queue.Message {
	m := message(id)
	m.SessionID = key
	m.ApplicationProperties = map[string]any{queue.PropOrderKey: key, queue.PropAttempt: int64(1)}
	return m
}

func orderWaitsForLocked(t *testing.T, b Backend) {
	for _, id := range []string{"a1", "a2", "a3"} {
		publish(t, b, keyed(id, "account/a"))
	}
	for _, want := range []string{"a1", "a2", "a3"} {
		got := receive(t, b, 10)
		if len(got) != 1 || got[0].MessageID != want {
			t.Fatalf("received %v, want %s alone: a record's messages come one at a time, in order", ids(got), want)
		}
		expectNone(t, b)
		complete(t, b, got[0])
	}
}

func orderOthersGoOn(t *testing.T, b Backend) {
	publish(t, b, keyed("a1", "account/a"))
	publish(t, b, keyed("a2", "account/a"))
	publish(t, b, keyed("b1", "account/b"))
	free := message("free1")
	free.SessionID = "free1" // a session-enabled queue needs one; the message has no order key
	publish(t, b, free)
	got := map[string]*queue.Received{}
	for len(got) < 3 {
		for _, r := range receive(t, b, 10) {
			got[r.MessageID] = r
		}
	}
	if _, ok := got["a2"]; ok || got["a1"] == nil || got["b1"] == nil || got["free1"] == nil {
		t.Fatalf("received %v, want a1, b1 and free1 side by side and a2 held back", keys(got))
	}
	expectNone(t, b)
	complete(t, b, got["a1"])
	if r := receiveOne(t, b); r.MessageID != "a2" {
		t.Fatalf("after a1 completed got %s, want a2", r.MessageID)
	}
}

func orderRetryKeepsPlace(t *testing.T, b Backend) {
	publish(t, b, keyed("r1", "account/r"))
	publish(t, b, keyed("r2", "account/r"))
	first := receiveOne(t, b)
	settle(t, b, first, queue.Outcome{Kind: queue.RetryLater, RetryAt: b.Now().Add(time.Minute), Attempt: 2, EventID: "r1"})
	expectNone(t, b) // r2 must not overtake r1 while r1 waits for its next attempt
	b.Advance(2 * time.Minute)
	// The retry is r1 again at attempt 2: a fresh chain r1/retry/2 on the embedded queue, the
	// same message delivered a second time on a session.
	again := receiveOne(t, b)
	if queue.BaseID(again.MessageID) != "r1" || queue.Attempt(again.ApplicationProperties) != 2 {
		t.Fatalf("after the back-off got %s at attempt %d, want r1's attempt 2 before r2",
			again.MessageID, queue.Attempt(again.ApplicationProperties))
	}
	expectNone(t, b)
	complete(t, b, again)
	if r := receiveOne(t, b); r.MessageID != "r2" {
		t.Fatalf("after r1's retry completed got %s, want r2", r.MessageID)
	}
}

func orderAbandonKeepsPlace(t *testing.T, b Backend) {
	publish(t, b, keyed("x1", "account/x"))
	publish(t, b, keyed("x2", "account/x"))
	if err := b.Abandon(context.Background(), receiveOne(t, b)); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	r := receiveOne(t, b)
	if r.MessageID != "x1" || r.DeliveryCount != 2 {
		t.Fatalf("after abandon got %s #%d, want x1 #2", r.MessageID, r.DeliveryCount)
	}
	b.Advance(LockDuration + time.Second)
	r = receiveOne(t, b)
	if r.MessageID != "x1" || r.DeliveryCount != 3 {
		t.Fatalf("after lock expiry got %s #%d, want x1 #3", r.MessageID, r.DeliveryCount)
	}
	complete(t, b, r)
	if r := receiveOne(t, b); r.MessageID != "x2" {
		t.Fatalf("got %s, want x2", r.MessageID)
	}
}

func orderDeadLetterReleases(t *testing.T, b Backend) {
	publish(t, b, keyed("d1", "account/d"))
	publish(t, b, keyed("d2", "account/d"))
	settle(t, b, receiveOne(t, b), queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Description: "422", EventID: "d1"})
	if r := receiveOne(t, b); r.MessageID != "d2" {
		t.Fatalf("after d1 was dead-lettered got %s, want d2", r.MessageID)
	}
}

func orderResubmitJoinsTail(t *testing.T, b Backend) {
	publish(t, b, keyed("t1", "account/t"))
	publish(t, b, keyed("t2", "account/t"))
	settle(t, b, receiveOne(t, b), queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Description: "422", EventID: "t1"})
	t2 := receiveOne(t, b)
	dl := deadLetters(t, b)
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dl))
	}
	id, err := b.Resubmit(context.Background(), dl[0].SequenceNumber)
	if err != nil {
		t.Fatalf("Resubmit: %v", err)
	}
	expectNone(t, b) // t2 holds the record: the resubmitted t1 waits behind it
	complete(t, b, t2)
	if r := receiveOne(t, b); r.MessageID != id {
		t.Fatalf("after t2 completed got %s, want the resubmitted %s", r.MessageID, id)
	}
}

func ids(rs []*queue.Received) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.MessageID)
	}
	return out
}

func keys(m map[string]*queue.Received) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
