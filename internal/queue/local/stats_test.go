package local

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// hangGuard bounds a call that must not wait for the writer, so that a regression fails with a
// message instead of hanging the test run. It is never what a test asserts.
const hangGuard = 10 * time.Second

func TestStats_answers_while_a_group_commit_is_in_progress(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	mustPublish(t, q, msg("a"))
	mustPublish(t, q, msg("b"))

	// Hold the writer inside its transaction, with a third message written but not committed:
	// the single write connection is busy, as it is while a group commit waits for its fsync.
	inside, release := make(chan struct{}), make(chan struct{})
	written := make(chan error, 1)
	go func() {
		written <- q.write(context.Background(), survivesPowerLoss, func(ctx context.Context, tx *sql.Tx, now int64) error {
			r, err := newRow(msg("c"))
			if err != nil {
				return err
			}
			if _, err := q.insertMessage(ctx, tx, r, now); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := q.Stats(ctx)
	close(release)
	if err != nil {
		t.Fatalf("Stats while the writer is busy = %v, want an answer without waiting for it", err)
	}
	if st.Queued != 2 {
		t.Errorf("Stats while the writer is busy counted %d queued, want the 2 committed", st.Queued)
	}
	if err := <-written; err != nil {
		t.Fatalf("held write: %v", err)
	}
	if st, err := q.Stats(context.Background()); err != nil || st.Queued != 3 {
		t.Fatalf("Stats after the commit = %+v, %v; want 3 queued", st, err)
	}
}

func TestStats_fails_with_DeadlineExceeded_when_the_read_stalls_past_its_deadline(t *testing.T) {
	stalled := make(chan struct{})
	reading := make(chan struct{}, 1)
	q := openTestQueue(t, t.TempDir(), Options{beforeRead: func() {
		reading <- struct{}{}
		<-stalled // a disk that does not answer
	}})
	t.Cleanup(func() { close(stalled) }) // runs before the queue's Close, which waits for the read

	ctx := newExpiringCtx()
	answered := make(chan error, 1)
	go func() {
		_, err := q.Stats(ctx)
		answered <- err
	}()
	<-reading
	ctx.expire()
	select {
	case err := <-answered:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stats on a stalled read = %v, want an error wrapping context.DeadlineExceeded", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Stats is still waiting for a stalled read after its deadline passed")
	}
}

func TestStats_counts_a_message_whose_last_lock_ran_out_as_dead_lettered(t *testing.T) {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, LockDuration: time.Minute, MaxDeliveryCount: 1})
	mustPublish(t, q, msg("last-try"))
	mustReceive(t, q, 1)
	clock.Advance(time.Minute) // its only delivery's lock runs out
	mustPublish(t, q, msg("fresh"))

	want := queue.Stats{Queued: 1, DeadLettered: 1}
	if st, err := q.Stats(context.Background()); err != nil || st != want {
		t.Fatalf("Stats = %+v, %v; want %+v", st, err, want)
	}
	// Moving it for real changes nothing in the counts.
	dl, err := q.ListDeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].MessageID != "last-try" {
		t.Fatalf("dead letters = %+v, %v; want last-try", dl, err)
	}
	if st, err := q.Stats(context.Background()); err != nil || st != want {
		t.Fatalf("Stats after the move = %+v, %v; want %+v", st, err, want)
	}
}

func TestReaders_refuse_to_write(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	if _, err := q.readers.Exec(`DELETE FROM messages`); err == nil {
		t.Fatal("a write on the read pool succeeded; every write must go through the writer")
	}
}

// expiringCtx is a context whose deadline passes when the test says so, not on the wall clock.
type expiringCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringCtx() *expiringCtx {
	return &expiringCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringCtx) expire() { c.once.Do(func() { close(c.done) }) }

func (c *expiringCtx) Deadline() (time.Time, bool) { return time.Time{}, true }

func (c *expiringCtx) Done() <-chan struct{} { return c.done }

func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
