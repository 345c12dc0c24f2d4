package servicebus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// sessionLink is the part of *azservicebus.SessionReceiver this package uses.
type sessionLink interface {
	ReceiveMessages(ctx context.Context, maxMessages int, o *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error
	RenewSessionLock(ctx context.Context, o *azservicebus.RenewSessionLockOptions) error
	LockedUntil() time.Time
	SessionID() string
	Close(ctx context.Context) error
}

var _ sessionLink = (*azservicebus.SessionReceiver)(nil)

// SessionReceiver consumes a session-enabled queue for `handler serve`, one record per session:
// each of its places accepts the next free session and takes that session's messages one at a
// time, in order, so a record's events never run side by side and never overtake each other,
// while up to Places records run at once.
//
// A retry keeps its place (Reschedule): the place holds the session, waits until the retry is
// due, renewing the session lock, and then abandons the message, which Service Bus serves again
// first in its session with the delivery count raised. That count is the attempt: Receive sets
// the Attempt property to it. This is the same design as the Functions host's (see
// worker.InPlacePolicy), so the worker's policy is the same in both modes. A record waiting for
// its retry holds one place.
type SessionReceiver struct {
	accept func(ctx context.Context) (sessionLink, error)
	opts   SessionOptions

	startOnce sync.Once
	stop      context.CancelFunc
	stopped   sync.WaitGroup
	ready     chan *sessionMessage

	mu   sync.Mutex
	held map[string]*sessionMessage // by lock token
}

// SessionOptions tune a SessionReceiver. Zero values take the defaults noted.
type SessionOptions struct {
	// Places is how many sessions (records) are held at once (default 16).
	Places int
	// IdleWait is how long a session with no message ready is kept before it is released for
	// another (default 2s).
	IdleWait time.Duration
	// Now is the clock a retry's due time is measured on (default time.Now); Tick bounds each
	// wait for it (default 1s), so a clock moved by a test is noticed.
	Now  func() time.Time
	Tick time.Duration
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.Places <= 0 {
		o.Places = 16
	}
	if o.IdleWait <= 0 {
		o.IdleWait = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	return o
}

// sessionMessage is a message a place handed out, waiting for its settlement.
type sessionMessage struct {
	rm      *azservicebus.ReceivedMessage
	rc      *queue.Received
	link    sessionLink
	settled chan settlement // buffered, 1
}

// settlement is what happened to a handed-out message; retryAt is set for a retry in place.
type settlement struct {
	retryAt time.Time
	lost    bool // the session lock is gone: give the session up
}

var (
	_ queue.Receiver = (*SessionReceiver)(nil)
	_ queue.Settler  = (*SessionReceiver)(nil)
)

// NewSessionReceiver makes a SessionReceiver for the session-enabled queue queueName.
func NewSessionReceiver(client *azservicebus.Client, queueName string, opts SessionOptions) *SessionReceiver {
	return newSessionReceiver(func(ctx context.Context) (sessionLink, error) {
		return client.AcceptNextSessionForQueue(ctx, queueName, nil)
	}, opts)
}

func newSessionReceiver(accept func(ctx context.Context) (sessionLink, error), opts SessionOptions) *SessionReceiver {
	return &SessionReceiver{accept: accept, opts: opts.withDefaults(), ready: make(chan *sessionMessage), held: map[string]*sessionMessage{}}
}

func (r *SessionReceiver) start() {
	r.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		r.stop = cancel
		for range r.opts.Places {
			r.stopped.Go(func() { r.place(ctx) })
		}
	})
}

// place serves one session after another until ctx ends.
func (r *SessionReceiver) place(ctx context.Context) {
	for ctx.Err() == nil {
		acceptCtx, cancel := context.WithTimeout(ctx, time.Minute)
		link, err := r.accept(acceptCtx)
		cancel()
		if err != nil {
			// No session is free (the service answers with a timeout), or the namespace is
			// unreachable: look again after a pause rather than spin.
			r.sleep(ctx, r.opts.Tick)
			continue
		}
		r.serve(ctx, link)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = link.Close(closeCtx)
		cancel()
	}
}

// serve hands out link's messages one at a time until the session has none ready.
func (r *SessionReceiver) serve(ctx context.Context, link sessionLink) {
	for ctx.Err() == nil {
		idle, cancel := context.WithTimeout(ctx, r.opts.IdleWait)
		msgs, err := link.ReceiveMessages(idle, 1, nil)
		cancel()
		if err != nil || len(msgs) == 0 {
			return
		}
		m := &sessionMessage{rm: msgs[0], rc: fromReceived(msgs[0]), link: link, settled: make(chan settlement, 1)}
		// The same message delivered again is the next attempt of its event.
		m.rc.ApplicationProperties = maps.Clone(m.rc.ApplicationProperties)
		if m.rc.ApplicationProperties == nil {
			m.rc.ApplicationProperties = map[string]any{}
		}
		m.rc.ApplicationProperties[queue.PropAttempt] = int64(max(m.rc.DeliveryCount, 1))
		m.rc.LockedUntil = link.LockedUntil()
		r.mu.Lock()
		r.held[m.rc.LockToken] = m
		r.mu.Unlock()
		select {
		case r.ready <- m:
		case <-ctx.Done():
			r.forget(m)
			return
		}
		var s settlement
		select {
		case s = <-m.settled:
		case <-ctx.Done():
			return // closing the session returns the message uncounted
		}
		if s.lost {
			return
		}
		if !s.retryAt.IsZero() && !r.holdThenAbandon(ctx, m, s.retryAt) {
			return
		}
	}
}

// holdThenAbandon keeps the session until retryAt, renewing its lock, and abandons m so the
// session serves it again first. false: the session is lost or the receiver is closing.
func (r *SessionReceiver) holdThenAbandon(ctx context.Context, m *sessionMessage, retryAt time.Time) bool {
	for {
		wait := retryAt.Sub(r.opts.Now())
		if wait <= 0 {
			break
		}
		if !r.sleep(ctx, min(wait, r.opts.Tick)) {
			return false
		}
		if until := m.link.LockedUntil(); !until.IsZero() && until.Sub(r.opts.Now()) < time.Minute {
			if err := m.link.RenewSessionLock(ctx, nil); err != nil {
				return false
			}
		}
	}
	return m.link.AbandonMessage(ctx, m.rm, nil) == nil
}

func (r *SessionReceiver) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Receive waits until a place has a message (or ctx is done) and returns up to max of those ready.
func (r *SessionReceiver) Receive(ctx context.Context, max int) ([]*queue.Received, error) {
	r.start()
	var out []*queue.Received
	select {
	case m := <-r.ready:
		out = append(out, m.rc)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case m := <-r.ready:
			out = append(out, m.rc)
		default:
			return out, nil
		}
	}
	return out, nil
}

func (r *SessionReceiver) message(rc *queue.Received) (*sessionMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.held[rc.LockToken]
	if !ok {
		return nil, fmt.Errorf("%s: no session of this receiver holds it: %w", rc.MessageID, queue.ErrLockLost)
	}
	return m, nil
}

func (r *SessionReceiver) forget(m *sessionMessage) {
	r.mu.Lock()
	delete(r.held, m.rc.LockToken)
	r.mu.Unlock()
}

// settle runs fn on the message rc was received as and lets its place go on with s.
func (r *SessionReceiver) settle(op string, rc *queue.Received, s settlement, fn func(m *sessionMessage) error) error {
	m, err := r.message(rc)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := settleError(fn(m)); err != nil {
		if errors.Is(err, queue.ErrLockLost) {
			r.forget(m)
			m.settled <- settlement{lost: true}
		}
		return fmt.Errorf("%s %s: %w", op, rc.MessageID, err)
	}
	r.forget(m)
	m.settled <- s
	return nil
}

// Complete removes the message; its session goes on with the record's next event.
func (r *SessionReceiver) Complete(ctx context.Context, rc *queue.Received) error {
	return r.settle("complete", rc, settlement{}, func(m *sessionMessage) error {
		return m.link.CompleteMessage(ctx, m.rm, nil)
	})
}

// Abandon releases the message; its session serves it again first.
func (r *SessionReceiver) Abandon(ctx context.Context, rc *queue.Received) error {
	return r.settle("abandon", rc, settlement{}, func(m *sessionMessage) error {
		return m.link.AbandonMessage(ctx, m.rm, nil)
	})
}

// Reschedule keeps the message in its place: see SessionReceiver. props are not written (a
// session message cannot be changed in place); the delivery count carries the attempt.
func (r *SessionReceiver) Reschedule(_ context.Context, rc *queue.Received, at time.Time, _ map[string]any) error {
	return r.settle("retry in place", rc, settlement{retryAt: at}, func(*sessionMessage) error { return nil })
}

// DeadLetterReceived moves the message to the queue's dead-letter sub-queue, which releases its record.
func (r *SessionReceiver) DeadLetterReceived(ctx context.Context, rc *queue.Received, reason, description string) error {
	return r.deadLetter(ctx, rc, reason, description, nil)
}

// DeadLetterWith is DeadLetterReceived with info's properties.
func (r *SessionReceiver) DeadLetterWith(ctx context.Context, rc *queue.Received, info queue.DeadLetterInfo) error {
	return r.deadLetter(ctx, rc, info.Reason, info.Description, info.Properties())
}

func (r *SessionReceiver) deadLetter(ctx context.Context, rc *queue.Received, reason, description string, props map[string]any) error {
	var modify map[string]any
	if len(props) > 0 {
		modify = maps.Clone(props)
		delete(modify, queue.PropDeadLetterReason)
		delete(modify, queue.PropDeadLetterErrorDescription)
	}
	return r.settle("dead-letter", rc, settlement{}, func(m *sessionMessage) error {
		return m.link.DeadLetterMessage(ctx, m.rm, &azservicebus.DeadLetterOptions{
			Reason: &reason, ErrorDescription: &description, PropertiesToModify: modify,
		})
	})
}

// RenewLock renews the lock of the session rc belongs to, which covers its messages.
func (r *SessionReceiver) RenewLock(ctx context.Context, rc *queue.Received) error {
	m, err := r.message(rc)
	if err != nil {
		return fmt.Errorf("renew lock: %w", err)
	}
	if err := settleError(m.link.RenewSessionLock(ctx, nil)); err != nil {
		return fmt.Errorf("renew session lock %s: %w", m.link.SessionID(), err)
	}
	rc.LockedUntil = m.link.LockedUntil()
	return nil
}

// Settle makes the worker's outcome true (queue.SettleWith): complete, retry in place, or dead-letter.
func (r *SessionReceiver) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	m, err := r.message(&queue.Received{Message: queue.Message{MessageID: d.MessageID}, LockToken: d.LockToken})
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	return queue.SettleWith(ctx, r, m.rc, d, out)
}

// Close stops the places and releases their sessions; messages not yet settled come back.
func (r *SessionReceiver) Close(context.Context) error {
	r.startOnce.Do(func() { r.stop = func() {} }) // never received: nothing to stop, and nothing starts later
	r.stop()
	r.stopped.Wait()
	return nil
}
