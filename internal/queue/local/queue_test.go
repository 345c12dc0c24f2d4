package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/queuetest"
)

// manualClock is a clock the tests move by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// backend adapts a Queue on a manual clock to the contract suite.
type backend struct {
	*Queue
	clock *manualClock
}

func (b backend) Now() time.Time { return b.clock.Now() }

func (b backend) Advance(d time.Duration) {
	b.clock.Advance(d)
	b.wake() // a waiting Receive re-checks against the new time
}

func openTestQueue(t testing.TB, dir string, opts Options) *Queue {
	t.Helper()
	q, err := Open(context.Background(), dir, opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestQueue_keeps_the_queue_contract(t *testing.T) {
	queuetest.Run(t, newContractBackend)
}

func TestQueue_keeps_each_record_in_order(t *testing.T) {
	queuetest.RunOrder(t, newContractBackend)
}

func newContractBackend(t *testing.T) queuetest.Backend {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{
		LockDuration:     queuetest.LockDuration,
		MaxDeliveryCount: queuetest.MaxDeliveryCount,
		DuplicateWindow:  queuetest.DuplicateWindow,
		Now:              clock.Now,
	})
	return backend{Queue: q, clock: clock}
}

func msg(id string) *queue.Message {
	return &queue.Message{
		MessageID:     id,
		CorrelationID: "corr-" + id,
		Subject:       "OpportunityUpdated",
		ContentType:   "application/json",
		Body:          []byte(`{"EventId":"` + id + `"}`),
	}
}

func mustPublish(t testing.TB, q *Queue, m *queue.Message) {
	t.Helper()
	if err := q.Publish(context.Background(), m); err != nil {
		t.Fatalf("Publish %s: %v", m.MessageID, err)
	}
}

func mustReceive(t testing.TB, q *Queue, maxMessages int) []*queue.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := q.Receive(ctx, maxMessages)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return got
}

func TestQueue_keeps_messages_across_close_and_open(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, Options{})
	m := msg("durable")
	m.ApplicationProperties = map[string]any{queue.PropAttempt: int64(3)}
	mustPublish(t, q, m)
	if err := q.DeadLetter(context.Background(), msg("parked"), "InvalidMessage", "not an event"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openTestQueue(t, dir, Options{})
	r := mustReceive(t, q, 10)
	if len(r) != 1 || r[0].MessageID != "durable" || r[0].ApplicationProperties[queue.PropAttempt] != int64(3) {
		t.Fatalf("after reopen received %+v, want durable with Attempt 3", r)
	}
	dl, err := q.ListDeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].MessageID != "parked" {
		t.Fatalf("after reopen dead letters = %+v, %v; want parked", dl, err)
	}
	mustPublish(t, q, msg("durable")) // still inside the duplicate window after a restart
	if err := q.Complete(context.Background(), r[0]); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if got, _ := q.Receive(ctx, 1); len(got) != 0 {
		t.Fatalf("a duplicate published after reopen was delivered: %s", got[0].MessageID)
	}
}

func TestOpen_refuses_a_dir_another_queue_holds(t *testing.T) {
	dir := t.TempDir()
	openTestQueue(t, dir, Options{})
	_, err := Open(context.Background(), dir, Options{}, nil)
	if !errors.Is(err, queue.ErrDirInUse) {
		t.Fatalf("second Open = %v, want ErrDirInUse", err)
	}
	for _, want := range []string{dir, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestOpen_takes_the_dir_once_the_holder_closed(t *testing.T) {
	dir := t.TempDir()
	first := openTestQueue(t, dir, Options{})
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	openTestQueue(t, dir, Options{})
}

func TestOpen_releases_locks_left_by_an_earlier_process(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, Options{LockDuration: time.Hour, MaxDeliveryCount: 2})
	mustPublish(t, q, msg("interrupted"))
	mustPublish(t, q, msg("last-chance"))
	got := mustReceive(t, q, 2)
	if len(got) != 2 {
		t.Fatalf("received %d, want 2", len(got))
	}
	// A second delivery of last-chance: its interrupted lock is its last allowed one.
	for _, r := range got {
		if r.MessageID == "last-chance" {
			if err := q.Abandon(context.Background(), r); err != nil {
				t.Fatalf("Abandon: %v", err)
			}
		}
	}
	again := mustReceive(t, q, 1)
	if again[0].MessageID != "last-chance" || again[0].DeliveryCount != 2 {
		t.Fatalf("got %s #%d, want last-chance #2", again[0].MessageID, again[0].DeliveryCount)
	}
	// The process dies holding both locks: Close leaves locks as they are, as a crash would.
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openTestQueue(t, dir, Options{LockDuration: time.Hour, MaxDeliveryCount: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	back, err := q.Receive(ctx, 10) // no need to wait out the hour-long lock
	if err != nil || len(back) != 1 {
		t.Fatalf("Receive after reopen = %v, %v; want interrupted back at once", back, err)
	}
	if back[0].MessageID != "interrupted" || back[0].DeliveryCount != 2 {
		t.Errorf("got %s #%d, want interrupted with the crashed delivery counted (#2)", back[0].MessageID, back[0].DeliveryCount)
	}
	dl, err := q.ListDeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].MessageID != "last-chance" || dl[0].Reason != queue.ReasonMaxDeliveryCountExceeded {
		t.Fatalf("dead letters = %+v, %v; want last-chance with MaxDeliveryCountExceeded", dl, err)
	}
}

func TestPublish_from_100_goroutines_lands_each_message_exactly_once(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	const publishers = 100
	var wg sync.WaitGroup
	errs := make(chan error, publishers*2)
	for i := range publishers {
		wg.Go(func() {
			id := fmt.Sprintf("evt-%03d", i)
			// Every publisher sends its event twice, as a retrying intake would.
			for range 2 {
				if err := q.Publish(context.Background(), msg(id)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Publish: %v", err)
	}
	seen := map[string]int{}
	for len(seen) < publishers {
		for _, r := range mustReceive(t, q, 50) {
			seen[r.MessageID]++
			if err := q.Complete(context.Background(), r); err != nil {
				t.Fatalf("Complete: %v", err)
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times, want once", id, n)
		}
	}
	st, err := q.Stats(context.Background())
	if err != nil || st.Queued != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing left", st, err)
	}
}

func TestPublish_returns_ctx_error_when_the_caller_gives_up(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Publish(ctx, msg("gone")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestPublish_after_close_fails_with_ErrClosed(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := q.Publish(context.Background(), msg("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Receive(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close = %v, want ErrClosed", err)
	}
}

func TestPublish_rejects_properties_service_bus_would_not_carry(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	m := msg("nested")
	m.ApplicationProperties = map[string]any{"Nested": map[string]any{"a": 1}}
	if err := q.Publish(context.Background(), m); err == nil {
		t.Fatal("Publish with a map property succeeded, want an error")
	}
}

func TestQueue_returns_numbers_as_int64_or_float64(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	m := msg("numbers")
	m.ApplicationProperties = map[string]any{"int": 7, "int32": int32(8), "float": 2.5, "whole float": 3.0}
	mustPublish(t, q, m)
	got := mustReceive(t, q, 1)[0].ApplicationProperties
	want := map[string]any{"int": int64(7), "int32": int64(8), "float": 2.5, "whole float": int64(3)}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, got[k], got[k], w, w)
		}
	}
}

func TestResubmit_moves_a_dead_letter_back_under_a_new_message_id(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	m := msg("evt-9")
	m.ApplicationProperties = map[string]any{queue.PropAttempt: int64(5), queue.PropEventName: "OpportunityUpdated"}
	mustPublish(t, q, m)
	r := mustReceive(t, q, 1)[0]
	if err := q.DeadLetterReceived(context.Background(), r, "MaxAttemptsExceeded", "erp unavailable"); err != nil {
		t.Fatalf("DeadLetterReceived: %v", err)
	}

	for n := 1; n <= 2; n++ {
		dl, err := q.ListDeadLetters(context.Background(), 10)
		if err != nil || len(dl) != 1 {
			t.Fatalf("dead letters = %+v, %v; want one", dl, err)
		}
		id, err := q.Resubmit(context.Background(), dl[0].SequenceNumber)
		if err != nil {
			t.Fatalf("Resubmit: %v", err)
		}
		if want := fmt.Sprintf("evt-9/resubmit/%d", n); id != want {
			t.Fatalf("new MessageID = %q, want %q", id, want)
		}
		back := mustReceive(t, q, 1)[0]
		p := back.ApplicationProperties
		if back.MessageID != id || back.DeliveryCount != 1 || string(back.Body) != string(m.Body) {
			t.Errorf("resubmitted = %s #%d %s", back.MessageID, back.DeliveryCount, back.Body)
		}
		for _, gone := range []string{queue.PropDeadLetterReason, queue.PropDeadLetterErrorDescription, queue.PropAttempt} {
			if _, ok := p[gone]; ok {
				t.Errorf("resubmitted message still has %s", gone)
			}
		}
		if p[queue.PropOriginalMessageID] != "evt-9" || p[queue.PropEventName] != "OpportunityUpdated" {
			t.Errorf("resubmitted properties = %v, want OriginalMessageId evt-9 and EventName kept", p)
		}
		if err := q.DeadLetterReceived(context.Background(), back, "PermanentFailure", "again"); err != nil {
			t.Fatalf("DeadLetterReceived: %v", err)
		}
	}
}

func TestDeadLetter_tooling_reports_unknown_sequence_numbers(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	if _, err := q.Resubmit(context.Background(), 42); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Resubmit(42) = %v, want ErrNotFound", err)
	}
	if err := q.PurgeDeadLetter(context.Background(), 42); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("PurgeDeadLetter(42) = %v, want ErrNotFound", err)
	}
}

func TestPurgeDeadLetter_deletes_it_for_good(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	if err := q.DeadLetter(context.Background(), msg("junk"), "InvalidMessage", "x"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	dl, _ := q.ListDeadLetters(context.Background(), 10)
	if err := q.PurgeDeadLetter(context.Background(), dl[0].SequenceNumber); err != nil {
		t.Fatalf("PurgeDeadLetter: %v", err)
	}
	if dl, _ := q.ListDeadLetters(context.Background(), 10); len(dl) != 0 {
		t.Fatalf("dead letters after purge = %d", len(dl))
	}
}

func TestStats_counts_messages_by_state(t *testing.T) {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now})
	mustPublish(t, q, msg("a"))
	clock.Advance(time.Minute)
	mustPublish(t, q, msg("b"))
	later := msg("c")
	later.ScheduledEnqueueTime = clock.Now().Add(time.Hour)
	mustPublish(t, q, later)
	if err := q.DeadLetter(context.Background(), msg("d"), "InvalidMessage", "x"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	mustReceive(t, q, 1) // a locked message still counts as queued
	clock.Advance(30 * time.Second)

	st, err := q.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := queue.Stats{Queued: 2, Scheduled: 1, DeadLettered: 1, OldestQueuedAge: 90 * time.Second}
	if st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
}

func TestOpen_sets_up_sqlite_for_durability(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	var mode string
	var sync int
	if err := q.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := q.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
}

// Close while publishes are in flight: each Publish either returned nil and its message is
// there after a reopen, or failed with ErrClosed. Nothing in between.
func TestClose_keeps_every_publish_that_returned_nil_and_fails_the_rest(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, Options{})
	const publishers = 64
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []string
	)
	acceptedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	for i := range publishers {
		wg.Go(func() {
			for n := 0; ; n++ {
				id := fmt.Sprintf("evt-%02d-%d", i, n)
				err := q.Publish(context.Background(), msg(id))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Publish %s = %v, want nil or ErrClosed", id, err)
					return
				}
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for acceptedCount() < 2*publishers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	q = openTestQueue(t, dir, Options{})
	seen := map[string]bool{}
	for len(seen) < len(accepted) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := q.Receive(ctx, 500)
		cancel()
		if err != nil {
			break
		}
		for _, r := range got {
			seen[r.MessageID] = true
		}
	}
	for _, id := range accepted {
		if !seen[id] {
			t.Errorf("%s: Publish returned nil, but the message is gone after Close", id)
		}
	}
}

// A message whose stored properties no longer decode (a damaged file) is dead-lettered at once,
// with a reason that says so, and the messages behind it are delivered.
func TestReceive_dead_letters_a_message_whose_properties_are_damaged_at_once_saying_so(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{MaxDeliveryCount: 10, LockDuration: time.Minute})
	ctx := context.Background()
	mustPublish(t, q, msg("damaged"))
	mustPublish(t, q, msg("sound"))
	if _, err := q.db.ExecContext(ctx, `UPDATE messages SET props = '{not json' WHERE message_id = 'damaged'`); err != nil {
		t.Fatal(err)
	}

	got := mustReceive(t, q, 1)
	if got[0].MessageID != "sound" {
		t.Fatalf("the next message was %s, want sound without waiting out the damaged one's lock", got[0].MessageID)
	}
	dead, err := q.ListDeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].MessageID != "damaged" || dead[0].Reason != queue.ReasonDamagedMessage ||
		!strings.Contains(dead[0].Description, "damaged") || dead[0].DeliveryCount != 1 {
		t.Errorf("dead letters = %+v, want the damaged message, DamagedMessage after one delivery", dead)
	}
}

func TestReceive_hands_out_the_sound_messages_locked_beside_a_damaged_one(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	ctx := context.Background()
	mustPublish(t, q, msg("damaged"))
	mustPublish(t, q, msg("sound"))
	if _, err := q.db.ExecContext(ctx, `UPDATE messages SET props = '{not json' WHERE message_id = 'damaged'`); err != nil {
		t.Fatal(err)
	}
	got := mustReceive(t, q, 2)
	if len(got) != 1 || got[0].MessageID != "sound" {
		t.Fatalf("Receive(2) = %d messages, want the sound one alone", len(got))
	}
	if err := q.Complete(ctx, got[0]); err != nil {
		t.Errorf("Complete of the sound message: %v", err)
	}
}

// History walks whole tables to match an event's retries and resubmissions; it reads on the read
// pool, so it neither waits for the writer nor holds up the publishes behind it.
func TestHistory_answers_while_the_writer_connection_is_taken(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	mustPublish(t, q, msg("evt-1"))
	writer, err := q.db.Conn(context.Background()) // the writer's only connection
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := q.History(ctx, "evt-1")
	if err != nil {
		t.Fatalf("History while the writer connection was taken: %v", err)
	}
	if len(got) == 0 {
		t.Errorf("History of a queued event = none, want its sightings")
	}
}
