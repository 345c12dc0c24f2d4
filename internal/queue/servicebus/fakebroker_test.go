package servicebus

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"
)

// fakeBroker is an in-memory Service Bus namespace that speaks the SDK's own types, so the code
// under test cannot tell it from *azservicebus.Sender and *azservicebus.Receiver. It keeps the
// semantics the backend relies on (servicebus-semantics.md §1-4): peek-lock with lock expiry,
// delivery count (1 on the first delivery), MaxDeliveryCount → dead letter, duplicate detection
// on MessageID (a duplicate send succeeds and is dropped), scheduled messages, a dead-letter
// sub-queue that can be forwarded to another queue, and LockLost on a stale lock token.
//
// Simplifications: a scheduled message keeps the sequence number it got at send time (the
// broker assigns a new one when it activates), messages never expire, and a peek reports the
// number of deliveries so far.
type fakeBroker struct {
	mu     sync.Mutex
	now    func() time.Time
	queues map[string]*fakeQueue
}

type fakeQueueConfig struct {
	lockDuration     time.Duration
	maxDeliveryCount uint32
	dupWindow        time.Duration // 0: duplicate detection off
	forwardDLQTo     string
}

type fakeQueue struct {
	name        string
	cfg         fakeQueueConfig
	nextSeq     int64
	msgs        []*fakeMsg // active, scheduled and locked, in sequence order
	deadLetters []*fakeMsg // the $DeadLetterQueue sub-queue, when not forwarded
	seen        map[string]time.Time
	// heldSessions are the sessions a link holds (fakesessions_test.go).
	heldSessions map[string]*fakeSessionLink
}

type fakeMsg struct {
	rm          azservicebus.ReceivedMessage // the broker's copy; receivers get clones
	visibleAt   time.Time
	locked      bool
	lockedUntil time.Time
	holder      *fakeSessionLink // the session link that locked it, if any
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{now: time.Now, queues: map[string]*fakeQueue{}}
}

// defaultFakeQueue is the main queue as infra/main.bicep configures it.
func defaultFakeQueue() fakeQueueConfig {
	return fakeQueueConfig{lockDuration: time.Minute, maxDeliveryCount: 10, dupWindow: 10 * time.Minute}
}

func (b *fakeBroker) addQueue(name string, cfg fakeQueueConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queues[name] = &fakeQueue{name: name, cfg: cfg, seen: map[string]time.Time{}}
}

func (b *fakeBroker) queue(name string) *fakeQueue {
	q, ok := b.queues[name]
	if !ok {
		panic("fake broker: no queue " + name)
	}
	return q
}

// enqueue accepts a message the way the broker does. Call with mu held.
func (b *fakeBroker) enqueue(q *fakeQueue, m *azservicebus.Message, deadLetterSource *string) {
	now := b.now()
	if q.cfg.dupWindow > 0 && m.MessageID != nil {
		if first, dup := q.seen[*m.MessageID]; dup && now.Sub(first) < q.cfg.dupWindow {
			return
		}
		q.seen[*m.MessageID] = now
	}
	q.nextSeq++
	rm := azservicebus.ReceivedMessage{
		ApplicationProperties: maps.Clone(m.ApplicationProperties),
		Body:                  slices.Clone(m.Body),
		ContentType:           m.ContentType,
		CorrelationID:         m.CorrelationID,
		SessionID:             m.SessionID,
		Subject:               m.Subject,
		TimeToLive:            m.TimeToLive,
		SequenceNumber:        ptr(q.nextSeq),
		EnqueuedTime:          ptr(now),
		ScheduledEnqueueTime:  m.ScheduledEnqueueTime,
		DeadLetterSource:      deadLetterSource,
	}
	if m.MessageID != nil {
		rm.MessageID = *m.MessageID
	}
	fm := &fakeMsg{rm: rm, visibleAt: now}
	if m.ScheduledEnqueueTime != nil && m.ScheduledEnqueueTime.After(now) {
		fm.visibleAt = *m.ScheduledEnqueueTime
	}
	q.msgs = append(q.msgs, fm)
}

// expireLocks releases locks that ran out, counting the delivery. Call with mu held.
func (b *fakeBroker) expireLocks(q *fakeQueue) {
	now := b.now()
	for _, m := range slices.Clone(q.msgs) {
		if m.locked && !now.Before(m.lockedUntil) {
			b.release(q, m)
		}
	}
}

// release unlocks m; past the max delivery count it is dead-lettered. Call with mu held.
func (b *fakeBroker) release(q *fakeQueue, m *fakeMsg) {
	if m.holder != nil && !b.now().Before(m.lockedUntil) && q.heldSessions[deref(m.rm.SessionID)] == m.holder {
		delete(q.heldSessions, deref(m.rm.SessionID)) // the session's lock ran out with it
	}
	m.locked, m.holder = false, nil
	m.rm.LockToken = [16]byte{}
	if q.cfg.maxDeliveryCount > 0 && m.rm.DeliveryCount >= q.cfg.maxDeliveryCount {
		b.deadLetter(q, m, "MaxDeliveryCountExceeded", "Message could not be consumed after max delivery attempts.", nil)
	}
}

// deadLetter moves m to q's dead-letter sub-queue, or forwards it. Call with mu held.
func (b *fakeBroker) deadLetter(q *fakeQueue, m *fakeMsg, reason, description string, props map[string]any) {
	q.msgs = slices.DeleteFunc(q.msgs, func(x *fakeMsg) bool { return x == m })
	if m.rm.ApplicationProperties == nil {
		m.rm.ApplicationProperties = map[string]any{}
	}
	m.rm.ApplicationProperties["DeadLetterReason"] = reason
	m.rm.ApplicationProperties["DeadLetterErrorDescription"] = description
	maps.Copy(m.rm.ApplicationProperties, props)
	m.locked = false
	if q.cfg.forwardDLQTo != "" {
		// Assumption, not verified against the service: the forwarded copy keeps the delivery
		// count the message had when it was dead-lettered.
		target := b.queue(q.cfg.forwardDLQTo)
		b.enqueue(target, m.rm.Message(), ptr(q.name))
		if fwd := target.msgs[len(target.msgs)-1]; fwd.rm.MessageID == m.rm.MessageID {
			fwd.rm.DeliveryCount = m.rm.DeliveryCount
		}
		return
	}
	q.deadLetters = append(q.deadLetters, m)
}

// snapshot is the message as a receiver sees it: a copy, with the dead-letter fields filled
// from the application properties as the SDK's newReceivedMessage does.
func snapshot(m *fakeMsg, now time.Time) *azservicebus.ReceivedMessage {
	rm := m.rm
	rm.ApplicationProperties = maps.Clone(m.rm.ApplicationProperties)
	if s, ok := rm.ApplicationProperties["DeadLetterReason"].(string); ok {
		rm.DeadLetterReason = &s
	}
	if s, ok := rm.ApplicationProperties["DeadLetterErrorDescription"].(string); ok {
		rm.DeadLetterErrorDescription = &s
	}
	if m.locked {
		rm.LockedUntil = ptr(m.lockedUntil)
	}
	if m.visibleAt.After(now) {
		rm.State = azservicebus.MessageStateScheduled
	}
	return &rm
}

// lockedMessage finds the message a settlement refers to; a stale or unknown token is LockLost,
// as the broker reports it. Call with mu held.
func (b *fakeBroker) lockedMessage(q *fakeQueue, token [16]byte) (*fakeMsg, error) {
	b.expireLocks(q)
	for _, m := range q.msgs {
		if m.locked && m.rm.LockToken == token {
			return m, nil
		}
	}
	return nil, &azservicebus.Error{Code: azservicebus.CodeLockLost}
}

// state returns copies of what the queue holds, for assertions.
func (b *fakeBroker) state(name string) (active, deadLettered []*azservicebus.ReceivedMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(name)
	b.expireLocks(q)
	now := b.now()
	for _, m := range q.msgs {
		active = append(active, snapshot(m, now))
	}
	for _, m := range q.deadLetters {
		deadLettered = append(deadLettered, snapshot(m, now))
	}
	return active, deadLettered
}

// fakeSender is a Sender for one queue. onSend, when set, runs before the broker accepts the
// message and can fail or stall the send.
type fakeSender struct {
	b      *fakeBroker
	queue  string
	onSend func(ctx context.Context, m *azservicebus.Message) error

	mu   sync.Mutex
	sent []*azservicebus.Message // every message the broker accepted (duplicates included)
}

func (b *fakeBroker) sender(queue string) *fakeSender { return &fakeSender{b: b, queue: queue} }

func (s *fakeSender) SendMessage(ctx context.Context, m *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	if s.onSend != nil {
		if err := s.onSend(ctx, m); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.enqueue(s.b.queue(s.queue), m, nil)
	s.b.mu.Unlock()
	s.mu.Lock()
	s.sent = append(s.sent, m)
	s.mu.Unlock()
	return nil
}

func (s *fakeSender) Close(context.Context) error { return nil }

func (s *fakeSender) messages() []*azservicebus.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// fakeReceiver is a peek-lock Receiver for one queue. Like the SDK's, it refuses a second
// ReceiveMessages while one is running.
type fakeReceiver struct {
	b          *fakeBroker
	queue      string
	onComplete func(m *azservicebus.ReceivedMessage) error

	mu         sync.Mutex
	receiving  bool
	lastPeeked int64
	completes  int
	abandons   int
}

func (b *fakeBroker) receiver(queue string) *fakeReceiver { return &fakeReceiver{b: b, queue: queue} }

// pollInterval is how often a waiting ReceiveMessages looks again (scheduled messages and
// expired locks become visible by the clock, not by an event).
const pollInterval = 2 * time.Millisecond

func (r *fakeReceiver) ReceiveMessages(ctx context.Context, maxMessages int, _ *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	if r.receiving {
		r.mu.Unlock()
		return nil, errors.New("receiver is already receiving messages. ReceiveMessages() cannot be called concurrently")
	}
	r.receiving = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.receiving = false
		r.mu.Unlock()
	}()
	if maxMessages <= 0 {
		return nil, errors.New("maxMessages should be greater than 0")
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if msgs := r.tryReceive(maxMessages); len(msgs) > 0 {
			return msgs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (r *fakeReceiver) tryReceive(maxMessages int) []*azservicebus.ReceivedMessage {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(r.queue)
	b.expireLocks(q)
	now := b.now()
	var out []*azservicebus.ReceivedMessage
	for _, m := range q.msgs {
		if len(out) == maxMessages {
			break
		}
		if m.locked || m.visibleAt.After(now) {
			continue
		}
		m.locked = true
		m.lockedUntil = now.Add(q.cfg.lockDuration)
		m.rm.LockToken = uuid.New()
		m.rm.DeliveryCount++
		out = append(out, snapshot(m, now))
	}
	return out
}

func (r *fakeReceiver) CompleteMessage(_ context.Context, msg *azservicebus.ReceivedMessage, _ *azservicebus.CompleteMessageOptions) error {
	r.mu.Lock()
	r.completes++
	r.mu.Unlock()
	if r.onComplete != nil {
		if err := r.onComplete(msg); err != nil {
			return err
		}
	}
	return r.settleLocked(msg, func(b *fakeBroker, q *fakeQueue, m *fakeMsg) {
		q.msgs = slices.DeleteFunc(q.msgs, func(x *fakeMsg) bool { return x == m })
	})
}

func (r *fakeReceiver) AbandonMessage(_ context.Context, msg *azservicebus.ReceivedMessage, o *azservicebus.AbandonMessageOptions) error {
	r.mu.Lock()
	r.abandons++
	r.mu.Unlock()
	return r.settleLocked(msg, func(b *fakeBroker, q *fakeQueue, m *fakeMsg) {
		if o != nil && o.PropertiesToModify != nil {
			if m.rm.ApplicationProperties == nil {
				m.rm.ApplicationProperties = map[string]any{}
			}
			maps.Copy(m.rm.ApplicationProperties, o.PropertiesToModify)
		}
		b.release(q, m)
	})
}

func (r *fakeReceiver) DeadLetterMessage(_ context.Context, msg *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error {
	var reason, description string
	var props map[string]any
	if o != nil {
		reason, description, props = deref(o.Reason), deref(o.ErrorDescription), o.PropertiesToModify
	}
	return r.settleLocked(msg, func(b *fakeBroker, q *fakeQueue, m *fakeMsg) {
		b.deadLetter(q, m, reason, description, props)
	})
}

func (r *fakeReceiver) RenewMessageLock(_ context.Context, msg *azservicebus.ReceivedMessage, _ *azservicebus.RenewMessageLockOptions) error {
	return r.settleLocked(msg, func(b *fakeBroker, q *fakeQueue, m *fakeMsg) {
		m.lockedUntil = b.now().Add(q.cfg.lockDuration)
		msg.LockedUntil = ptr(m.lockedUntil)
	})
}

// settleLocked runs fn under the broker's lock on the message msg's lock token still holds,
// or fails as the broker does when that lock is gone.
func (r *fakeReceiver) settleLocked(msg *azservicebus.ReceivedMessage, fn func(b *fakeBroker, q *fakeQueue, m *fakeMsg)) error {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(r.queue)
	m, err := b.lockedMessage(q, msg.LockToken)
	if err != nil {
		return err
	}
	fn(b, q, m)
	return nil
}

func (r *fakeReceiver) PeekMessages(_ context.Context, maxMessages int, o *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	from := r.lastPeeked + 1
	explicit := o != nil && o.FromSequenceNumber != nil
	if explicit {
		from = *o.FromSequenceNumber
	}
	r.mu.Unlock()

	b := r.b
	b.mu.Lock()
	q := b.queue(r.queue)
	b.expireLocks(q)
	now := b.now()
	var out []*azservicebus.ReceivedMessage
	for _, m := range q.msgs {
		if len(out) == maxMessages {
			break
		}
		if deref(m.rm.SequenceNumber) >= from {
			pm := snapshot(m, now)
			pm.LockToken = [16]byte{} // a peek takes no lock
			pm.LockedUntil = nil
			out = append(out, pm)
		}
	}
	b.mu.Unlock()

	if len(out) > 0 && !explicit {
		r.mu.Lock()
		r.lastPeeked = deref(out[len(out)-1].SequenceNumber)
		r.mu.Unlock()
	}
	return out, nil
}

func (r *fakeReceiver) Close(context.Context) error { return nil }

func (r *fakeReceiver) counts() (completes, abandons int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.completes, r.abandons
}

// manualClock is a clock tests move by hand, for lock expiry and schedules.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock {
	return &manualClock{t: time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)}
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
