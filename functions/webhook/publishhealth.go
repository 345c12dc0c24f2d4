package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Bounds of what the intake tells health about its publishes (PublishHealth).
const (
	// PublishStalledAfter is how long one publish may wait before the intake counts the queue as
	// stalled: a healthy commit takes milliseconds, and a probe gives up after a few seconds.
	PublishStalledAfter = 2 * time.Second
	// PublishFailureMemory is how long a failed publish counts when nothing has been published
	// since. A probe that takes the instance out of rotation also stops the traffic that would
	// show the queue back, so the failure is forgotten after a while and the next publish decides.
	PublishFailureMemory = 30 * time.Second
)

// ErrQueueStalled and ErrQueueFailing are the reasons PublishHealth gives.
var (
	ErrQueueStalled = errors.New("a publish has waited too long: the queue is not taking events")
	ErrQueueFailing = errors.New("the last publish failed: the queue is not taking events")
)

// publishWatch remembers the outcome of the intake's publishes for health: the publishes still
// waiting on the queue (a frozen disk holds them), and how the last finished one ended (a full
// disk fails them all). The queue counts health reads say nothing of either: reads go on working
// when writes no longer do.
type publishWatch struct {
	now func() time.Time

	mu      sync.Mutex
	next    uint64
	pending map[uint64]time.Time // start of each publish the queue has not answered
	lastAt  time.Time            // when the last publish ended
	lastErr error                // how it ended
}

func newPublishWatch(now func() time.Time) *publishWatch {
	return &publishWatch{now: now, pending: map[uint64]time.Time{}}
}

// start records a publish begun; done records its end. A publish the caller gave up on
// (callerGone) says nothing of the queue and is not remembered as a failure.
func (w *publishWatch) start() (done func(err error, callerGone bool)) {
	w.mu.Lock()
	id := w.next
	w.next++
	w.pending[id] = w.now()
	w.mu.Unlock()
	return func(err error, callerGone bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.pending, id)
		if err != nil && callerGone {
			return
		}
		w.lastAt, w.lastErr = w.now(), err
	}
}

// health is nil when the recent publishes say the queue takes events.
func (w *publishWatch) health() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	for _, started := range w.pending {
		if waited := now.Sub(started); waited >= PublishStalledAfter {
			return fmt.Errorf("%w (for %s)", ErrQueueStalled, waited.Round(time.Second))
		}
	}
	if w.lastErr != nil && now.Sub(w.lastAt) < PublishFailureMemory {
		return fmt.Errorf("%w: %w", ErrQueueFailing, w.lastErr)
	}
	return nil
}

// PublishHealth says whether the intake can queue events, from its recent publishes: an error
// wrapping ErrQueueStalled while a publish has waited PublishStalledAfter or more, or
// ErrQueueFailing when the last publish, within PublishFailureMemory, failed. It never waits, so
// health can call it on every probe.
func (in *Intake) PublishHealth(context.Context) error { return in.publishes.health() }
