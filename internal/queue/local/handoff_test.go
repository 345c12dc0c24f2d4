package local

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// waitingReceives is how many Receives are waiting for a handoff.
func waitingReceives(q *Queue) int {
	q.waiting.mu.Lock()
	defer q.waiting.mu.Unlock()
	return len(q.waiting.list)
}

// receiveAsync starts a Receive of up to n messages and returns where its result arrives, once
// the Receive waits for a handoff.
func receiveAsync(t *testing.T, q *Queue, ctx context.Context, n int) <-chan []*queue.Received {
	t.Helper()
	before := waitingReceives(q)
	out := make(chan []*queue.Received, 1)
	go func() {
		got, err := q.Receive(ctx, n)
		if err != nil && ctx.Err() == nil {
			t.Errorf("Receive: %v", err)
		}
		out <- got
	}()
	deadline := time.Now().Add(10 * time.Second)
	for waitingReceives(q) == before {
		if time.Now().After(deadline) {
			t.Fatal("the Receive never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	return out
}

// At a steady rate the worker's Receive is already waiting when an event lands: the event must
// reach it without the read pool's look for work or a lock transaction of its own, and arrive
// as any delivery does: locked, counted and with its properties.
func TestReceive_is_handed_a_publish_without_looking_on_the_queue(t *testing.T) {
	var reads atomic.Int64
	q := openTestQueue(t, t.TempDir(), Options{beforeRead: func() { reads.Add(1) }})
	ctx := context.Background()

	for i, id := range []string{"e1", "e2", "e3"} {
		received := receiveAsync(t, q, ctx, 10)
		before := reads.Load()
		m := msg(id)
		m.ApplicationProperties = map[string]any{queue.PropEntity: "account", "n": int64(i)}
		mustPublish(t, q, m)
		got := <-received
		if n := reads.Load() - before; n != 0 {
			t.Errorf("%s: %d reads on the read pool between the publish and its delivery, want 0", id, n)
		}
		if len(got) != 1 || got[0].MessageID != id || got[0].DeliveryCount != 1 || got[0].LockToken == "" ||
			got[0].ApplicationProperties["n"] != int64(i) || string(got[0].Body) != string(m.Body) {
			t.Fatalf("%s: handed %+v, want it once, delivery 1, locked, with its properties and body", id, got)
		}
		// The lock is the queue's: a settlement finds it.
		if err := q.Complete(ctx, got[0]); err != nil {
			t.Fatalf("%s: Complete of a handed message: %v", id, err)
		}
	}
	if s, err := q.Stats(ctx); err != nil || s.Queued != 0 {
		t.Fatalf("Stats = %+v, %v; want all three completed", s, err)
	}
}

// The worker calls Receive again as soon as it is handed a message. That Receive must wait at
// once, without a look on the queue first: while it looked no Receive was waiting, and the
// publishes of that moment would miss the handoff and cost a look and a lock of their own.
func TestReceive_called_again_after_a_handoff_waits_without_looking_on_the_queue(t *testing.T) {
	var reads atomic.Int64
	q := openTestQueue(t, t.TempDir(), Options{beforeRead: func() { reads.Add(1) }})
	ctx := context.Background()
	received := receiveAsync(t, q, ctx, 10)
	waitForWaiter(t, q)
	mustPublish(t, q, msg("first"))
	if got := <-received; len(got) != 1 || got[0].MessageID != "first" {
		t.Fatalf("handed %v, want first", got)
	}

	before := reads.Load()
	received = receiveAsync(t, q, ctx, 10)
	waitForWaiter(t, q)
	mustPublish(t, q, msg("second"))
	if got := <-received; len(got) != 1 || got[0].MessageID != "second" {
		t.Fatalf("handed %v, want second", got)
	}
	if n := reads.Load() - before; n != 0 {
		t.Errorf("the Receive after a handoff read the queue %d times, want 0: nothing was freed since the last look", n)
	}
}

// waitForWaiter returns once a Receive is waiting for a handoff.
func waitForWaiter(t *testing.T, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !q.waiting.any() {
		if time.Now().After(deadline) {
			t.Fatal("no Receive began to wait")
		}
		time.Sleep(time.Millisecond)
	}
}

// A record's next event never goes to a waiting Receive while an earlier one is on the queue;
// the completion that lets it go wakes the Receive, which finds it on the queue.
func TestHandoff_keeps_a_records_order(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	ctx := context.Background()

	received := receiveAsync(t, q, ctx, 10)
	mustPublish(t, q, keyedMsg("a1", "account/a"))
	first := <-received
	if len(first) != 1 || first[0].MessageID != "a1" {
		t.Fatalf("handed %v, want a1", first)
	}

	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	received = receiveAsync(t, q, waitCtx, 10)
	mustPublish(t, q, keyedMsg("a2", "account/a")) // waits behind a1
	mustPublish(t, q, keyedMsg("b1", "account/b"))
	got := <-received
	if len(got) != 1 || got[0].MessageID != "b1" {
		t.Fatalf("handed %v while a1 is held, want b1 alone", got)
	}

	received = receiveAsync(t, q, waitCtx, 10)
	if err := q.Complete(ctx, first[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case got = <-received:
	case <-time.After(10 * time.Second):
		t.Fatal("completing a1 did not let a2 go to the waiting Receive")
	}
	if len(got) != 1 || got[0].MessageID != "a2" || got[0].DeliveryCount != 1 {
		t.Fatalf("after a1 completed: %v, want a2, first delivery", got)
	}
}

// A Receive that gives up while it waits is never handed anything after: the next publish stays
// on the queue, undelivered, for the next Receive.
func TestHandoff_locks_nothing_for_a_receive_that_gave_up(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{LockDuration: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	received := receiveAsync(t, q, ctx, 10)
	cancel()
	if got := <-received; len(got) != 0 {
		t.Fatalf("a cancelled Receive returned %v", got)
	}
	mustPublish(t, q, msg("later"))
	got := mustReceive(t, q, 10) // at once, not after the hour-long lock
	if len(got) != 1 || got[0].MessageID != "later" || got[0].DeliveryCount != 1 {
		t.Fatalf("received %v, want later, first delivery", got)
	}
}

// A handed message's lock is as durable as any: a process that dies holding it gives the
// message back at the next Open, with the interrupted delivery counted.
func TestHandoff_lock_is_released_with_its_delivery_counted_after_a_crash(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, Options{LockDuration: time.Hour})
	received := receiveAsync(t, q, context.Background(), 1)
	mustPublish(t, q, msg("interrupted"))
	if got := <-received; len(got) != 1 {
		t.Fatalf("handed %v, want interrupted", got)
	}
	if err := q.Close(); err != nil { // leaves locks as a crash would
		t.Fatal(err)
	}
	q = openTestQueue(t, dir, Options{LockDuration: time.Hour})
	back := mustReceive(t, q, 1)
	if len(back) != 1 || back[0].MessageID != "interrupted" || back[0].DeliveryCount != 2 {
		t.Fatalf("after reopen: %v, want interrupted, delivery 2", back)
	}
}

// Many Receives and many publishers at once: every message is delivered exactly once, whether
// it was handed over or found on the queue.
func TestHandoff_delivers_each_message_once_under_concurrency(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const publishers, each, receivers = 8, 50, 4
	seen := make(chan string, publishers*each)
	var stopped sync.WaitGroup
	defer stopped.Wait()
	defer cancel()
	for range receivers {
		stopped.Go(func() {
			for ctx.Err() == nil {
				got, err := q.Receive(ctx, 3)
				if err != nil {
					return
				}
				for _, r := range got {
					seen <- r.MessageID
					if err := q.Complete(context.Background(), r); err != nil {
						t.Errorf("Complete %s: %v", r.MessageID, err)
					}
				}
			}
		})
	}
	for p := range publishers {
		go func() {
			for i := range each {
				id := string(rune('a'+p)) + "-" + time.Duration(i).String()
				if err := q.Publish(ctx, msg(id)); err != nil {
					t.Errorf("Publish: %v", err)
				}
			}
		}()
	}
	count := map[string]int{}
	for range publishers * each {
		select {
		case id := <-seen:
			count[id]++
			if count[id] > 1 {
				t.Errorf("%s delivered %d times", id, count[id])
			}
		case <-ctx.Done():
			t.Fatalf("delivered %d of %d", len(count), publishers*each)
		}
	}
}

// A Receive that stopped waiting while a message was being locked for it waits for that message;
// should the change that locked it be rolled back (its commit failed), the Receive is let go
// rather than left waiting for a handoff that will never come.
func TestWaiters_let_a_leaving_receive_go_when_its_claim_is_rolled_back(t *testing.T) {
	var ws waiters
	w := ws.await(context.Background(), 1)
	if got := ws.claim(); got != w {
		t.Fatalf("claim = %p, want the waiter %p", got, w)
	}
	if ws.leave(w) {
		t.Fatal("a waiter with a message locked for it left")
	}
	ws.unclaim(w)
	select {
	case <-w.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the leaving waiter was never let go after its only claim was rolled back")
	}
	if ws.claim() != nil {
		t.Error("a waiter that left was claimed again")
	}
}
