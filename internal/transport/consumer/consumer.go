// Package consumer drives a peek-lock queue with the worker in standalone mode: it receives
// messages, hands each to the worker as a Delivery, keeps the lock alive while the worker runs,
// and makes the worker's outcome true through the queue's queue.Settler. In Functions mode the
// host plays this part.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Processor decides what happens to one delivery. The worker implements it.
type Processor interface {
	Process(ctx context.Context, d queue.Delivery) queue.Outcome
}

// Queue is what the loop needs from a peek-lock backend: messages in, locks kept alive, a message
// released at once, and the worker's outcomes applied by the backend's one Settler.
// *local.Queue and *servicebus.Receiver implement it.
type Queue interface {
	// Receive waits until at least one message is available (or ctx is done) and locks up to max.
	Receive(ctx context.Context, max int) ([]*queue.Received, error)
	// RenewLock extends the lock of r and updates r.LockedUntil.
	RenewLock(ctx context.Context, r *queue.Received) error
	// Abandon releases the lock at once, so the message comes back.
	Abandon(ctx context.Context, r *queue.Received) error
	queue.Settler
}

// Clock is the loop's time: when a lock is renewed, how long the receive back-off and the
// shutdown grace last, how long a message took. Tests pass a manual one so that none of it costs
// wall-clock time.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once d has passed by this clock.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the loop uses.
type Timer interface {
	Chan() <-chan time.Time
	// Stop releases the timer; the loop calls it whenever it stops waiting.
	Stop() bool
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time                 { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) Chan() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool             { return t.t.Stop() }

// Options tune the loop. Zero values take the defaults noted on each field.
type Options struct {
	// Concurrency is the most messages processed at once (config.DefaultWorkerConcurrency).
	Concurrency int
	// Prefetch is how many messages are received ahead of a free place among Concurrency, so
	// that one is ready the moment a place frees instead of waiting for a Receive (a durable
	// write on the embedded queue). Their locks are renewed from the moment they are received,
	// and on shutdown those not started are released at once. Zero means Concurrency; a
	// negative value turns prefetching off.
	Prefetch int
	// LockDuration is the queue's lock duration; a message's lock is renewed every half of it
	// while the worker is busy with it (config.DefaultLockDuration, the embedded queue's). When
	// the message's own LockedUntil leaves less time than that, renewal comes sooner: the
	// broker's lock, not this setting, decides when the message goes back to the queue.
	LockDuration time.Duration
	// ShutdownGrace is how long in-flight messages may keep running once Run's ctx is cancelled;
	// what is still running after that is abandoned, so it comes back to the next process
	// (default config.DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// Clock is the time the loop goes by (default the system clock). Lock expiry itself is the
	// queue's to judge, by its own clock.
	Clock Clock
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = config.DefaultWorkerConcurrency
	}
	switch {
	case o.Prefetch == 0:
		o.Prefetch = o.Concurrency
	case o.Prefetch < 0:
		o.Prefetch = 0
	}
	if o.LockDuration <= 0 {
		o.LockDuration = config.DefaultLockDuration
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = config.DefaultShutdownGrace
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	return o
}

const (
	// settleTimeout bounds one settlement. Settling must not share the processing ctx: a message
	// whose work was cut short by shutdown still has to be released.
	settleTimeout = 10 * time.Second
	// A failing Receive is retried with exponential back-off between these bounds, so a broken
	// queue is logged, not spun on.
	minReceiveBackoff = 100 * time.Millisecond
	maxReceiveBackoff = 30 * time.Second
	// minRenewInterval keeps a failing renewal of a lock close to its end from spinning.
	minRenewInterval = 50 * time.Millisecond
)

// Consumer is the receive → process → settle loop.
type Consumer struct {
	queue     Queue
	processor Processor
	opts      Options
	clock     Clock
	log       *slog.Logger
}

// New returns a Consumer that feeds p from q and settles p's outcomes on q.
func New(q Queue, p Processor, opts Options, log *slog.Logger) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts = opts.withDefaults()
	return &Consumer{queue: q, processor: p, opts: opts, clock: opts.Clock, log: log}
}

// Run receives and processes messages until ctx is cancelled. It then stops receiving, releases
// the messages received ahead and not started, lets the messages in flight finish within
// ShutdownGrace, cancels and abandons those still running, and returns nil. A Processor that
// ignores its ctx after that is left running unobserved: its message has already been released.
//
// The loop holds at most Concurrency + Prefetch messages locked: processing, received ahead, or
// being settled. Concurrency workers take the messages in the order they were received; a
// settlement does not keep its worker, so the next message starts while the last one's outcome
// is being written.
func (c *Consumer) Run(ctx context.Context) error {
	// Work outlives ctx: cancelling ctx stops receiving, stopWork ends the grace period.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()

	tokens := make(chan struct{}, c.opts.Concurrency+c.opts.Prefetch) // one per message held
	ready := make(chan *held, cap(tokens))                            // never full: a token each
	var inFlight sync.WaitGroup
	for range c.opts.Concurrency {
		inFlight.Go(func() { c.work(ctx, workCtx, ready, tokens, &inFlight) })
	}
	c.receive(ctx, workCtx, tokens, ready)
	inFlight.Go(func() { c.releaseWaiting(workCtx, ready, tokens) })
	return c.drain(&inFlight, stopWork)
}

// receive fills ready with locked messages while a token is free, until ctx ends.
func (c *Consumer) receive(ctx, workCtx context.Context, tokens chan struct{}, ready chan<- *held) {
	backoff := minReceiveBackoff
	for {
		select {
		case tokens <- struct{}{}:
		case <-ctx.Done():
			return
		}
		want := 1
	fill:
		for want < cap(tokens) {
			select {
			case tokens <- struct{}{}:
				want++
			default:
				break fill
			}
		}
		msgs, err := c.queue.Receive(ctx, want)
		for range want - len(msgs) {
			<-tokens
		}
		for _, r := range msgs {
			ready <- c.hold(workCtx, r)
		}
		if err == nil {
			backoff = minReceiveBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Error("receive failed; backing off", "error", err, "backoffMs", backoff.Milliseconds())
		if !c.sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxReceiveBackoff)
	}
}

// held is a received message whose lock the consumer keeps alive until it is processed.
type held struct {
	r   *queue.Received
	log *slog.Logger
	// stopRenewing ends the lock renewal and waits for it.
	stopRenewing func()
}

// hold starts renewing r's lock, from the moment it is received. workCtx ends when the shutdown
// grace is over.
func (c *Consumer) hold(workCtx context.Context, r *queue.Received) *held {
	// The message id names one delivery chain; the event's id is its base (the intake publishes
	// each event under its EventId), so a support engineer can follow one event across retries.
	log := c.log.With("messageId", r.MessageID, "eventId", queue.BaseID(r.MessageID),
		"correlationId", r.CorrelationID, "deliveryCount", r.DeliveryCount)
	renewCtx, stopRenew := context.WithCancel(workCtx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		c.renewLock(renewCtx, r, log)
	}()
	return &held{r: r, log: log, stopRenewing: func() {
		stopRenew()
		<-renewed
	}}
}

// work is one of Concurrency workers: it processes the messages in ready one at a time and
// hands each to a settlement of its own, until receiving ends. A message taken from ready
// after that has not started and is released.
func (c *Consumer) work(receiving, workCtx context.Context, ready <-chan *held, tokens <-chan struct{}, inFlight *sync.WaitGroup) {
	for {
		var h *held
		select {
		case h = <-ready:
		case <-receiving.Done():
			return
		}
		if receiving.Err() != nil { // both were ready: the shutdown wins
			c.release(workCtx, h, tokens)
			continue
		}
		started := c.clock.Now()
		res, cut := c.processWithin(workCtx, h.r, h.log)
		h.stopRenewing()
		inFlight.Go(func() {
			defer func() { <-tokens }()
			c.conclude(workCtx, h, res, cut, c.clock.Now().Sub(started))
		})
	}
}

// releaseWaiting abandons the messages still waiting in ready once receiving has stopped.
func (c *Consumer) releaseWaiting(workCtx context.Context, ready <-chan *held, tokens <-chan struct{}) {
	for {
		select {
		case h := <-ready:
			c.release(workCtx, h, tokens)
		default:
			return
		}
	}
}

// release gives back a message that was received but never started.
func (c *Consumer) release(workCtx context.Context, h *held, tokens <-chan struct{}) {
	defer func() { <-tokens }()
	h.stopRenewing()
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(workCtx), settleTimeout)
	defer cancel()
	h.log.Debug("shutting down: releasing a message received ahead")
	c.abandon(settleCtx, h.r, h.log)
}

// drain waits for the messages in flight, for at most ShutdownGrace, then cancels the rest
// (which abandons them) and waits for their release.
func (c *Consumer) drain(inFlight *sync.WaitGroup, stopWork context.CancelFunc) error {
	done := make(chan struct{})
	go func() {
		inFlight.Wait()
		close(done)
	}()
	grace := c.clock.NewTimer(c.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.Chan():
	}
	c.log.Warn("shutdown grace period over; releasing messages still in flight", "graceMs", c.opts.ShutdownGrace.Milliseconds())
	stopWork()
	<-done
	return nil
}

func (c *Consumer) sleep(ctx context.Context, d time.Duration) bool {
	t := c.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}

// result is what one Process call came to.
type result struct {
	outcome  queue.Outcome
	panicked bool
}

// conclude makes the outcome of processing h true on the queue: a cut or a panic releases the
// message, anything else is settled.
func (c *Consumer) conclude(workCtx context.Context, h *held, res result, cut bool, took time.Duration) {
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(workCtx), settleTimeout)
	defer cancel()
	switch {
	case cut:
		h.log.Warn("processing cut short by shutdown; releasing the message")
		c.abandon(settleCtx, h.r, h.log)
	case res.panicked:
		c.abandon(settleCtx, h.r, h.log)
	default:
		c.settle(settleCtx, h.r, res.outcome, h.log, took)
	}
}

// processWithin runs the Processor until it answers or the shutdown grace is over (cut).
func (c *Consumer) processWithin(workCtx context.Context, r *queue.Received, log *slog.Logger) (res result, cut bool) {
	procCtx, cancelProc := context.WithCancel(workCtx)
	defer cancelProc()
	results := make(chan result, 1) // buffered: a Process that outlives the grace must not block
	go func() { results <- c.process(procCtx, r, log) }()

	// Once the grace period is over the message is released whatever Process still returns:
	// an answer given because its ctx was cancelled is not a verdict on the event.
	select {
	case res = <-results:
		return res, false
	case <-workCtx.Done():
		return result{}, true
	}
}

// process calls the Processor, turning a panic into an abandon: the message comes back and the
// queue's max delivery count parks it if the panic is deterministic.
func (c *Consumer) process(ctx context.Context, r *queue.Received, log *slog.Logger) (res result) {
	defer func() {
		if v := recover(); v != nil {
			// The panic value may quote event data, so only its type is logged.
			log.Error("processor panicked; abandoning the message", "panic", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
			res = result{panicked: true}
		}
	}()
	return result{outcome: c.processor.Process(ctx, queue.DeliveryOf(r))}
}

// renewLock keeps r locked until ctx ends, renewing at half the time the lock has left (at
// most every half lock duration, as the Service Bus SDK's sample does). A lost lock cannot be
// won back: the message will be delivered again.
func (c *Consumer) renewLock(ctx context.Context, r *queue.Received, log *slog.Logger) {
	for {
		if !c.sleep(ctx, c.renewIn(r)) {
			return
		}
		err := c.queue.RenewLock(ctx, r)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case errors.Is(err, queue.ErrLockLost):
			log.Warn("lock lost while processing; the message will be delivered again", "error", err)
			return
		default:
			log.Warn("lock renewal failed; retrying", "error", err)
		}
	}
}

// renewIn is how long to wait before renewing r's lock: half of what is left of it by
// r.LockedUntil, capped at half the configured lock duration, so a failed renewal is retried
// sooner and sooner as the lock nears its end. LockedUntil is the queue's clock: when it says
// the lock is already over (a broker clock behind this one, or a lock really gone), the
// configured pace is kept rather than renewing in a tight loop.
func (c *Consumer) renewIn(r *queue.Received) time.Duration {
	wait := c.opts.LockDuration / 2
	if left := r.LockedUntil.Sub(c.clock.Now()); !r.LockedUntil.IsZero() && left > 0 {
		wait = min(wait, left/2)
	}
	return max(wait, minRenewInterval)
}

// settle makes the outcome true through the queue's Settler. When a retry or a dead letter
// cannot be written the message is abandoned instead, so it comes back rather than being lost;
// a complete that fails leaves the message to come back when its lock runs out.
func (c *Consumer) settle(ctx context.Context, r *queue.Received, out queue.Outcome, log *slog.Logger, took time.Duration) {
	log = log.With("outcome", out.Kind.String(), "durationMs", took.Milliseconds())
	if out.Step != "" {
		log = log.With("step", out.Step)
	}
	var op string
	switch out.Kind {
	case queue.Complete:
		op = "complete"
	case queue.RetryLater:
		op = "reschedule"
	case queue.DeadLetter:
		op = "dead-letter"
	default:
		log.Error("processor returned an unknown outcome; abandoning the message")
		c.abandon(ctx, r, log)
		return
	}
	d := queue.DeliveryOf(r)
	if err := c.queue.Settle(ctx, d, out); err != nil {
		logSettleError(log, op, err)
		if out.Kind != queue.Complete {
			c.abandonUnlessLost(ctx, r, err, log)
		}
		return
	}
	switch out.Kind {
	case queue.Complete:
		log.Debug("message completed")
	case queue.RetryLater:
		log.Info("message rescheduled", "attempt", out.Attempt, "retryAt", out.RetryAt.UTC().Format(time.RFC3339))
	case queue.DeadLetter:
		log.Warn("message dead-lettered", "reason", queue.DeadLetterInfoFor(d, out).Reason)
	}
}

func (c *Consumer) abandonUnlessLost(ctx context.Context, r *queue.Received, err error, log *slog.Logger) {
	if errors.Is(err, queue.ErrLockLost) {
		return
	}
	c.abandon(ctx, r, log)
}

func (c *Consumer) abandon(ctx context.Context, r *queue.Received, log *slog.Logger) {
	if err := c.queue.Abandon(ctx, r); err != nil {
		logSettleError(log, "abandon", err)
	}
}

func logSettleError(log *slog.Logger, op string, err error) {
	if errors.Is(err, queue.ErrLockLost) {
		log.Warn(op+" failed: lock lost; the message will be delivered again", "error", err)
		return
	}
	log.Error(op+" failed", "error", err)
}
