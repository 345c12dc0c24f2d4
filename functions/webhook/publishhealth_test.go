package webhook

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// clock is a time the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time       { return c.t }
func (c *clock) pass(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func TestPublishWatch_says_stalled_once_a_publish_has_waited_PublishStalledAfter(t *testing.T) {
	c := newClock()
	w := newPublishWatch(c.now)
	done := w.start() // a frozen disk holds it
	c.pass(PublishStalledAfter - time.Millisecond)
	if err := w.health(); err != nil {
		t.Fatalf("a publish waiting under the bound already counts: %v", err)
	}
	c.pass(time.Millisecond)
	if err := w.health(); !errors.Is(err, ErrQueueStalled) {
		t.Fatalf("health = %v, want ErrQueueStalled", err)
	}
	done(nil, false) // the disk thaws
	if err := w.health(); err != nil {
		t.Errorf("health after the publish ended well = %v", err)
	}
}

func TestPublishWatch_says_failing_after_a_failed_publish_until_one_succeeds_or_it_is_forgotten(t *testing.T) {
	c := newClock()
	w := newPublishWatch(c.now)
	w.start()(syscall.ENOSPC, false)
	if err := w.health(); !errors.Is(err, ErrQueueFailing) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("health = %v, want ErrQueueFailing wrapping the cause", err)
	}
	w.start()(nil, false)
	if err := w.health(); err != nil {
		t.Fatalf("health after a publish succeeded = %v", err)
	}
	w.start()(syscall.ENOSPC, false)
	c.pass(PublishFailureMemory)
	if err := w.health(); err != nil {
		t.Errorf("a failure with nothing published since is remembered past %s: %v", PublishFailureMemory, err)
	}
}

func TestPublishWatch_does_not_blame_the_queue_for_a_caller_that_went_away(t *testing.T) {
	w := newPublishWatch(newClock().now)
	w.start()(errors.New("context canceled"), true)
	if err := w.health(); err != nil {
		t.Errorf("health = %v", err)
	}
}
