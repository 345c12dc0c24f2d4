package servicebus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// The dead-letter tooling opens the backend without ever receiving: closing it must not accept
// sessions (and so hold records) on the way out.
func TestSessionReceiver_that_never_received_accepts_no_session(t *testing.T) {
	var accepts atomic.Int32
	r := newSessionReceiver(func(context.Context) (sessionLink, error) {
		accepts.Add(1)
		return nil, context.DeadlineExceeded
	}, SessionOptions{Tick: time.Millisecond})
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := accepts.Load(); n != 0 {
		t.Fatalf("accepted sessions %d times, want none", n)
	}
}

// A session receiver holds at most Places sessions: the records beyond them wait, as the
// Functions host's maxConcurrentSessions makes them.
func TestSessionReceiver_holds_at_most_its_places(t *testing.T) {
	b := newContractBackend()
	for _, id := range []string{"a", "b", "c"} {
		m := keyedMessage(id, "account/"+id)
		if err := b.Publisher.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	r := newSessionReceiver(b.broker.acceptNextSession(mainQueue), SessionOptions{Places: 2, IdleWait: 20 * time.Millisecond, Tick: 5 * time.Millisecond})
	defer r.Close(context.Background())
	got := map[string]bool{}
	for len(got) < 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msgs, err := r.Receive(ctx, 10)
		cancel()
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		for _, m := range msgs {
			got[m.MessageID] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if msgs, err := r.Receive(ctx, 10); err == nil {
		t.Fatalf("received %d more with both places busy, want none until one is settled", len(msgs))
	}
}

func keyedMessage(id, key string) *queue.Message {
	return &queue.Message{MessageID: id, SessionID: key, ContentType: "application/json", Body: []byte(`{}`),
		ApplicationProperties: map[string]any{queue.PropOrderKey: key}}
}
