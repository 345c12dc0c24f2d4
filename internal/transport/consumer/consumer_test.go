package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/transport/consumer"
)

// patience bounds every wait for something that should happen; tests poll, never sleep to assert.
const patience = 10 * time.Second

type processorFunc func(ctx context.Context, d queue.Delivery) queue.Outcome

func (f processorFunc) Process(ctx context.Context, d queue.Delivery) queue.Outcome {
	return f(ctx, d)
}

// recorder is a Processor double that records every delivery and answers with decide.
type recorder struct {
	mu         sync.Mutex
	deliveries []queue.Delivery
	decide     func(ctx context.Context, d queue.Delivery) queue.Outcome
}

func (r *recorder) Process(ctx context.Context, d queue.Delivery) queue.Outcome {
	r.mu.Lock()
	r.deliveries = append(r.deliveries, d)
	r.mu.Unlock()
	return r.decide(ctx, d)
}

func (r *recorder) seen() []queue.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]queue.Delivery(nil), r.deliveries...)
}

func openQueue(t *testing.T, opts local.Options) *local.Queue {
	t.Helper()
	q, err := local.Open(context.Background(), t.TempDir(), opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func publish(t *testing.T, q *local.Queue, id string, props map[string]any) {
	t.Helper()
	err := q.Publish(context.Background(), &queue.Message{
		MessageID:             id,
		CorrelationID:         "corr-" + id,
		Subject:               "OpportunityUpdated",
		ContentType:           "application/json",
		Body:                  []byte(`{"EventId":"` + id + `"}`),
		ApplicationProperties: props,
	})
	if err != nil {
		t.Fatalf("Publish %s: %v", id, err)
	}
}

// start runs c until the test ends. cancel asks Run to shut down; wait returns Run's error.
func start(t *testing.T, c *consumer.Consumer) (cancel context.CancelFunc, wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	wait = func() error {
		once.Do(func() {
			select {
			case runErr = <-done:
			case <-time.After(patience):
				runErr = errors.New("Run did not return after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		cancel()
		_ = wait()
	})
	return cancel, wait
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// manualClock is a consumer.Clock (and, through Now, a local.Options clock) that moves only
// when the test says so, so lock renewals and the shutdown grace cost no wall-clock time.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer // pending: neither fired nor stopped
}

type manualTimer struct {
	clock *manualClock
	at    time.Time
	ch    chan time.Time
}

func newManualClock() *manualClock { return &manualClock{now: time.Now()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) NewTimer(d time.Duration) consumer.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{clock: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *manualTimer) Chan() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.timers {
		if p == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// advance moves the clock by d and fires the timers that fall due.
func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	pending := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			pending = append(pending, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = pending
}

func (c *manualClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// awaitTimers waits until n timers are pending: the loop has armed what it waits on next.
func (c *manualClock) awaitTimers(t *testing.T, n int) bool {
	deadline := time.Now().Add(patience)
	for c.pending() < n {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %d pending timers (have %d)", n, c.pending())
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// pass lets d go by in steps, each once the lock renewal is armed again, as slow work would let
// it pass while the consumer keeps renewing. It is safe to call from the Processor's goroutine.
func (c *manualClock) pass(t *testing.T, d, step time.Duration) {
	for passed := time.Duration(0); passed < d; passed += step {
		if !c.awaitTimers(t, 1) {
			return
		}
		c.advance(step)
	}
}

func stats(t *testing.T, q *local.Queue) queue.Stats {
	t.Helper()
	s, err := q.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func deadLetters(t *testing.T, q *local.Queue) []queue.DeadLettered {
	t.Helper()
	dl, err := q.ListDeadLetters(context.Background(), 100)
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	return dl
}

func TestConsumer_hands_the_worker_the_message_as_a_delivery(t *testing.T) {
	q := openQueue(t, local.Options{})
	p := &recorder{decide: func(context.Context, queue.Delivery) queue.Outcome { return queue.Outcome{Kind: queue.Complete} }}
	start(t, consumer.New(q, p, consumer.Options{}, nil))
	publish(t, q, "evt-1", map[string]any{queue.PropAttempt: int64(2)})

	eventually(t, "the delivery", func() bool { return len(p.seen()) == 1 })
	d := p.seen()[0]
	if d.MessageID != "evt-1" || d.CorrelationID != "corr-evt-1" || d.Subject != "OpportunityUpdated" ||
		string(d.Body) != `{"EventId":"evt-1"}` || d.DeliveryCount != 1 || d.Attempt() != 2 || d.EnqueuedTime.IsZero() {
		t.Fatalf("delivery = %+v", d)
	}
}

func TestConsumer_applies_the_outcome_to_the_queue(t *testing.T) {
	cases := []struct {
		name    string
		outcome func(d queue.Delivery) queue.Outcome
		check   func(t *testing.T, q *local.Queue, p *recorder)
	}{
		{
			name:    "complete_removes_the_message",
			outcome: func(queue.Delivery) queue.Outcome { return queue.Outcome{Kind: queue.Complete} },
			check: func(t *testing.T, q *local.Queue, p *recorder) {
				eventually(t, "the queue to empty", func() bool { return stats(t, q) == queue.Stats{} })
			},
		},
		{
			name: "retry_later_redelivers_at_retry_at_as_the_next_attempt",
			outcome: func(d queue.Delivery) queue.Outcome {
				if d.Attempt() == 1 {
					return queue.Outcome{Kind: queue.RetryLater, RetryAt: time.Now().Add(300 * time.Millisecond), Attempt: 2}
				}
				return queue.Outcome{Kind: queue.Complete}
			},
			check: func(t *testing.T, q *local.Queue, p *recorder) {
				eventually(t, "the retry", func() bool { return len(p.seen()) == 2 })
				first, retry := p.seen()[0], p.seen()[1]
				if retry.Attempt() != 2 || retry.DeliveryCount != 1 {
					t.Errorf("retry has Attempt %d, DeliveryCount %d; want 2 and 1", retry.Attempt(), retry.DeliveryCount)
				}
				if gap := retry.EnqueuedTime.Sub(first.EnqueuedTime); gap < 0 {
					t.Errorf("retry enqueued before the first delivery (%v)", gap)
				}
				eventually(t, "the queue to empty", func() bool { return stats(t, q) == queue.Stats{} })
			},
		},
		{
			name: "dead_letter_parks_it_with_reason_and_step",
			outcome: func(queue.Delivery) queue.Outcome {
				return queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: "erp", Description: "erp answered 422"}
			},
			check: func(t *testing.T, q *local.Queue, p *recorder) {
				eventually(t, "the dead letter", func() bool { return len(deadLetters(t, q)) == 1 })
				d := deadLetters(t, q)[0]
				if d.Reason != queue.ReasonPermanentFailure || d.Description != "step erp: erp answered 422" {
					t.Errorf("dead letter reason %q description %q", d.Reason, d.Description)
				}
				if s := stats(t, q); s.Queued != 0 || s.Scheduled != 0 {
					t.Errorf("Stats = %+v, want the main queue empty", s)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := openQueue(t, local.Options{})
			p := &recorder{decide: func(_ context.Context, d queue.Delivery) queue.Outcome { return c.outcome(d) }}
			start(t, consumer.New(q, p, consumer.Options{}, nil))
			publish(t, q, "evt-"+c.name, map[string]any{queue.PropAttempt: int64(1)})
			c.check(t, q, p)
		})
	}
}

func TestConsumer_never_runs_more_than_Concurrency_at_once(t *testing.T) {
	q := openQueue(t, local.Options{})
	const concurrency = 3
	var running, peak atomic.Int32
	gate := make(chan struct{})
	var processed atomic.Int32
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		<-gate
		running.Add(-1)
		processed.Add(1)
		return queue.Outcome{Kind: queue.Complete}
	})
	for i := range 12 {
		publish(t, q, fmt.Sprintf("evt-%d", i), nil)
	}
	start(t, consumer.New(q, p, consumer.Options{Concurrency: concurrency}, nil))

	eventually(t, "the workers to fill up", func() bool { return running.Load() == concurrency })
	time.Sleep(100 * time.Millisecond) // give an unbounded loop the chance to start a fourth
	if got := peak.Load(); got != concurrency {
		t.Fatalf("peak concurrency = %d, want %d", got, concurrency)
	}
	close(gate)
	eventually(t, "all messages", func() bool { return processed.Load() == 12 })
	if got := peak.Load(); got > concurrency {
		t.Fatalf("peak concurrency = %d, want at most %d", got, concurrency)
	}
}

func TestConsumer_finishes_in_flight_work_on_shutdown(t *testing.T) {
	q := openQueue(t, local.Options{})
	started := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		calls.Add(1)
		close(started)
		<-release
		return queue.Outcome{Kind: queue.Complete}
	})
	cancel, wait := start(t, consumer.New(q, p, consumer.Options{ShutdownGrace: patience}, nil))
	publish(t, q, "in-flight", nil)
	<-started

	cancel()
	publish(t, q, "after-shutdown", nil) // must not be picked up any more
	stopped := make(chan error, 1)
	go func() { stopped <- wait() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a message was still in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v, want nil after a graceful shutdown", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("Process called %d times, want once: nothing new after shutdown", calls.Load())
	}
	if s := stats(t, q); s.Queued != 1 {
		t.Fatalf("Stats = %+v, want only after-shutdown left", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	left, err := q.Receive(ctx, 10)
	if err != nil || len(left) != 1 || left[0].MessageID != "after-shutdown" || left[0].DeliveryCount != 1 {
		t.Fatalf("left on the queue: %v, %v; want after-shutdown, never delivered", left, err)
	}
}

func TestConsumer_releases_work_still_running_after_the_grace_period(t *testing.T) {
	clock := newManualClock()
	q := openQueue(t, local.Options{LockDuration: time.Hour, Now: clock.Now})
	started := make(chan struct{})
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		close(started)
		<-ctx.Done()
		return queue.Outcome{Kind: queue.Complete} // must not be applied: the grace is over
	})
	cancel, wait := start(t, consumer.New(q, p, consumer.Options{ShutdownGrace: 50 * time.Millisecond, LockDuration: time.Hour, Clock: clock}, nil))
	publish(t, q, "stuck", nil)
	<-started
	cancel()
	clock.awaitTimers(t, 2) // the lock renewal and the shutdown grace
	clock.advance(50 * time.Millisecond)
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	back, err := q.Receive(ctx, 1) // at once, not after the hour-long lock
	if err != nil || len(back) != 1 || back[0].MessageID != "stuck" || back[0].DeliveryCount != 2 {
		t.Fatalf("after shutdown got %v, %v; want stuck released for redelivery", back, err)
	}
}

func TestConsumer_redelivers_after_a_panic_then_parks_the_message(t *testing.T) {
	const maxDeliveries = 3
	q := openQueue(t, local.Options{MaxDeliveryCount: maxDeliveries})
	var calls atomic.Int32
	p := processorFunc(func(context.Context, queue.Delivery) queue.Outcome {
		calls.Add(1)
		panic("poison")
	})
	start(t, consumer.New(q, p, consumer.Options{}, nil))
	publish(t, q, "poison", nil)

	eventually(t, "the dead letter", func() bool { return len(deadLetters(t, q)) == 1 })
	if d := deadLetters(t, q)[0]; d.Reason != queue.ReasonMaxDeliveryCountExceeded || d.DeliveryCount != maxDeliveries {
		t.Fatalf("dead letter reason %q after %d deliveries", d.Reason, d.DeliveryCount)
	}
	if got := calls.Load(); got != maxDeliveries {
		t.Fatalf("Process called %d times, want %d", got, maxDeliveries)
	}
}

func TestConsumer_renews_the_lock_while_work_is_slow(t *testing.T) {
	const lock = time.Second
	clock := newManualClock()
	q := openQueue(t, local.Options{LockDuration: lock, Now: clock.Now})
	var calls atomic.Int32
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		calls.Add(1)
		clock.pass(t, 5*lock/2, lock/10) // well past the lock: only renewal keeps it
		return queue.Outcome{Kind: queue.Complete}
	})
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	start(t, consumer.New(q, p, consumer.Options{LockDuration: lock, Concurrency: 2, Clock: clock}, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	publish(t, q, "slow", nil)

	eventually(t, "the queue to empty", func() bool { return calls.Load() == 1 && stats(t, q) == queue.Stats{} })
	if got := calls.Load(); got != 1 {
		t.Fatalf("Process called %d times, want once: the lock must not have expired", got)
	}
}

// failingSettler is a queue whose outcome writes fail as configured, recording abandons.
type failingSettler struct {
	*local.Queue
	completeErr, rescheduleErr, deadLetterErr error
	abandons                                  atomic.Int32
}

func (f *failingSettler) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	switch {
	case out.Kind == queue.Complete && f.completeErr != nil:
		return f.completeErr
	case out.Kind == queue.RetryLater && f.rescheduleErr != nil:
		return f.rescheduleErr
	case out.Kind == queue.DeadLetter && f.deadLetterErr != nil:
		return f.deadLetterErr
	}
	return f.Queue.Settle(ctx, d, out)
}

func (f *failingSettler) Abandon(ctx context.Context, r *queue.Received) error {
	f.abandons.Add(1)
	return f.Queue.Abandon(ctx, r)
}

// syncBuffer is a log sink safe for the consumer's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestConsumer_handles_a_failed_settlement(t *testing.T) {
	diskFull := errors.New("disk full")
	lockLost := fmt.Errorf("complete: %w", queue.ErrLockLost)
	cases := []struct {
		name        string
		outcome     queue.Outcome
		settler     func(q *local.Queue) *failingSettler
		wantLog     string
		wantAbandon bool
	}{
		{
			name:        "a_dead_letter_that_cannot_be_written_abandons",
			outcome:     queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonInvalidMessage, Description: "not an event"},
			settler:     func(q *local.Queue) *failingSettler { return &failingSettler{Queue: q, deadLetterErr: diskFull} },
			wantLog:     "dead-letter failed",
			wantAbandon: true,
		},
		{
			name:        "a_retry_that_cannot_be_scheduled_abandons",
			outcome:     queue.Outcome{Kind: queue.RetryLater, RetryAt: time.Now().Add(time.Minute), Attempt: 2},
			settler:     func(q *local.Queue) *failingSettler { return &failingSettler{Queue: q, rescheduleErr: diskFull} },
			wantLog:     "reschedule failed",
			wantAbandon: true,
		},
		{
			name:        "a_lost_lock_is_left_to_redelivery",
			outcome:     queue.Outcome{Kind: queue.Complete},
			settler:     func(q *local.Queue) *failingSettler { return &failingSettler{Queue: q, completeErr: lockLost} },
			wantLog:     "will be delivered again",
			wantAbandon: false,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := c.settler(openQueue(t, local.Options{LockDuration: time.Hour, MaxDeliveryCount: 1}))
			var logs syncBuffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			var calls atomic.Int32
			p := processorFunc(func(context.Context, queue.Delivery) queue.Outcome {
				calls.Add(1)
				return c.outcome
			})
			cancel, wait := start(t, consumer.New(q, p, consumer.Options{}, log))
			publish(t, q.Queue, "evt-7", nil)

			eventually(t, "the settlement log", func() bool { return strings.Contains(logs.String(), c.wantLog) })
			cancel()
			if err := wait(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := q.abandons.Load() > 0; got != c.wantAbandon {
				t.Errorf("abandoned = %v, want %v", got, c.wantAbandon)
			}
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, c.wantLog) &&
					(!strings.Contains(line, `"eventId":"evt-7"`) || !strings.Contains(line, `"correlationId":"corr-evt-7"`)) {
					t.Errorf("settlement log %s lacks messageId or correlationId", line)
				}
			}
		})
	}
}

// The consumer's LockDuration is configuration, the queue's lock is the broker's: when the queue
// locks for less than the consumer was told, renewal must follow the lock the message carries.
func TestConsumer_renews_by_the_messages_own_lock_when_the_queue_locks_for_less_than_configured(t *testing.T) {
	const lock = time.Second
	clock := newManualClock()
	q := openQueue(t, local.Options{LockDuration: lock, Now: clock.Now})
	var calls atomic.Int32
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		calls.Add(1)
		clock.pass(t, 5*lock/2, lock/10) // well past the lock: only renewal keeps it
		return queue.Outcome{Kind: queue.Complete}
	})
	start(t, consumer.New(q, p, consumer.Options{LockDuration: time.Minute, Concurrency: 2, Clock: clock}, nil))
	publish(t, q, "slow", nil)

	eventually(t, "the queue to empty", func() bool { return calls.Load() >= 1 && stats(t, q) == queue.Stats{} })
	if got := calls.Load(); got != 1 {
		t.Fatalf("Process called %d times, want once: the lock must not have expired", got)
	}
}

// skewedQueue hands out one message whose lock, by this machine's clock, always looks expired,
// as a broker clock running well behind this one would report it. It counts renewals.
type skewedQueue struct {
	clock     *manualClock
	once      sync.Once
	renewals  atomic.Int32
	completed chan struct{}
}

func (s *skewedQueue) Receive(ctx context.Context, _ int) ([]*queue.Received, error) {
	var out []*queue.Received
	s.once.Do(func() {
		out = []*queue.Received{{
			Message:     queue.Message{MessageID: "evt-skew"},
			LockToken:   "t",
			LockedUntil: s.clock.Now().Add(-2 * time.Minute),
		}}
	})
	if out != nil {
		return out, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *skewedQueue) RenewLock(_ context.Context, r *queue.Received) error {
	s.renewals.Add(1)
	r.LockedUntil = s.clock.Now().Add(-2 * time.Minute)
	return nil
}

func (s *skewedQueue) Settle(_ context.Context, _ queue.Delivery, out queue.Outcome) error {
	if out.Kind == queue.Complete {
		close(s.completed)
	}
	return nil
}
func (s *skewedQueue) Abandon(context.Context, *queue.Received) error { return nil }

func TestConsumer_does_not_hammer_renewals_when_the_queue_clock_disagrees(t *testing.T) {
	clock := newManualClock()
	q := &skewedQueue{clock: clock, completed: make(chan struct{})}
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		clock.pass(t, 300*time.Millisecond, 10*time.Millisecond)
		return queue.Outcome{Kind: queue.Complete}
	})
	start(t, consumer.New(q, p, consumer.Options{LockDuration: time.Second, Clock: clock}, nil))
	select {
	case <-q.completed:
	case <-time.After(patience):
		t.Fatal("the message was never completed")
	}
	// Every half lock duration (500ms) there is at most one renewal in 300ms of work.
	if got := q.renewals.Load(); got > 1 {
		t.Fatalf("RenewLock called %d times in 300ms with a 1s lock, want at most 1", got)
	}
}

// countingQueue counts the messages Receive handed out.
type countingQueue struct {
	*local.Queue
	received atomic.Int32
}

func (c *countingQueue) Receive(ctx context.Context, max int) ([]*queue.Received, error) {
	got, err := c.Queue.Receive(ctx, max)
	c.received.Add(int32(len(got)))
	return got, err
}

func TestConsumer_releases_a_message_received_ahead_at_once_on_shutdown(t *testing.T) {
	q := &countingQueue{Queue: openQueue(t, local.Options{LockDuration: time.Hour})}
	publish(t, q.Queue, "first", nil)
	publish(t, q.Queue, "second", nil)
	started := make(chan struct{})
	release := make(chan struct{})
	var processed []string
	var mu sync.Mutex
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		mu.Lock()
		processed = append(processed, d.MessageID)
		mu.Unlock()
		if d.MessageID == "first" {
			close(started)
			<-release
		}
		return queue.Outcome{Kind: queue.Complete}
	})
	cancel, wait := start(t, consumer.New(q, p, consumer.Options{Concurrency: 1, ShutdownGrace: patience}, nil))
	<-started
	eventually(t, "the second message to be received ahead", func() bool { return q.received.Load() == 2 })

	cancel()
	close(release)
	if err := wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(processed) != 1 || processed[0] != "first" {
		t.Fatalf("processed %v, want only first: a message not started by shutdown is not started after it", processed)
	}
	ctx, cancelReceive := context.WithTimeout(context.Background(), patience)
	defer cancelReceive()
	back, err := q.Queue.Receive(ctx, 10) // at once, not after the hour-long lock
	if err != nil || len(back) != 1 || back[0].MessageID != "second" {
		t.Fatalf("after shutdown got %v, %v; want second released for redelivery", back, err)
	}
}

func TestConsumer_keeps_the_lock_of_a_message_received_ahead(t *testing.T) {
	const lock = time.Second
	clock := newManualClock()
	q := &countingQueue{Queue: openQueue(t, local.Options{LockDuration: lock, Now: clock.Now})}
	publish(t, q.Queue, "slow", nil)
	publish(t, q.Queue, "waiting", nil)
	var mu sync.Mutex
	calls := map[string]int{}
	p := processorFunc(func(ctx context.Context, d queue.Delivery) queue.Outcome {
		mu.Lock()
		calls[d.MessageID]++
		mu.Unlock()
		if d.MessageID == "slow" {
			eventually(t, "the next message to be received ahead", func() bool { return q.received.Load() == 2 })
			// Well past the lock, in steps once both locks' renewals are armed again: only
			// renewal keeps the waiting message's lock.
			for passed := time.Duration(0); passed < 5*lock/2; passed += lock / 10 {
				if !clock.awaitTimers(t, 2) {
					break
				}
				clock.advance(lock / 10)
			}
		}
		return queue.Outcome{Kind: queue.Complete}
	})
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	start(t, consumer.New(q, p, consumer.Options{LockDuration: lock, Concurrency: 1, Clock: clock}, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))

	eventually(t, "the queue to empty", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls["waiting"] >= 1 && stats(t, q.Queue) == queue.Stats{}
	})
	mu.Lock()
	defer mu.Unlock()
	if calls["slow"] != 1 || calls["waiting"] != 1 {
		t.Fatalf("Process calls = %v, want each message once: no lock may have expired", calls)
	}
}
