package local

import (
	"context"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

func keyedMsg(id, key string) *queue.Message {
	m := msg(id)
	m.ApplicationProperties = map[string]any{queue.PropOrderKey: key}
	return m
}

// Support is warned before a resubmit would apply a record's older event over a newer one: the
// dead letter learns when a later event of its record completes, and only then.
func TestLaterCompletion_names_the_records_later_event_that_completed_after_the_dead_letter(t *testing.T) {
	ctx := context.Background()
	q := openTestQueue(t, t.TempDir(), Options{})
	mustPublish(t, q, keyedMsg("a1", "account/a"))
	mustPublish(t, q, keyedMsg("a2", "account/a"))
	mustPublish(t, q, keyedMsg("b1", "account/b"))

	for _, r := range mustReceive(t, q, 10) { // a1 and b1: a2 waits behind a1
		if err := q.DeadLetterReceived(ctx, r, "PermanentFailure", "422"); err != nil {
			t.Fatal(err)
		}
	}
	dl, err := q.ListDeadLetters(ctx, 10)
	if err != nil || len(dl) != 2 {
		t.Fatalf("dead letters %v (%v), want a1 and b1", dl, err)
	}
	if _, newer, err := q.LaterCompletion(ctx, dl[0].SequenceNumber); err != nil || newer {
		t.Fatalf("before a2 completed: newer %v (%v), want none", newer, err)
	}
	a2 := mustReceive(t, q, 10)
	if len(a2) != 1 || a2[0].MessageID != "a2" {
		t.Fatalf("received %v, want a2 once a1 was dead-lettered", a2)
	}
	if err := q.Complete(ctx, a2[0]); err != nil {
		t.Fatal(err)
	}
	c, newer, err := q.LaterCompletion(ctx, dl[0].SequenceNumber)
	if err != nil || !newer || c.MessageID != "a2" || c.OrderKey != "account/a" {
		t.Fatalf("after a2 completed: %+v newer %v (%v), want a2 of account/a", c, newer, err)
	}
	if _, newer, err := q.LaterCompletion(ctx, dl[1].SequenceNumber); err != nil || newer {
		t.Fatalf("b1, whose record had nothing later: newer %v (%v), want none", newer, err)
	}
}
