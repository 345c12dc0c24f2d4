package servicebus

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"
)

// Sessions on the fake broker (servicebus-semantics.md §5): a session is held by one link at a
// time, which receives its messages in sequence order; an abandoned message is served again
// first; a session whose lock runs out is released with its deliveries counted. Session locks
// are kept on the messages the session holds: renewing the session renews them.

// acceptNextSession returns what AcceptNextSessionForQueue does for queueName: the session of
// the oldest available message that no link holds, waiting until there is one.
func (b *fakeBroker) acceptNextSession(queueName string) func(ctx context.Context) (sessionLink, error) {
	return func(ctx context.Context) (sessionLink, error) {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			if l := b.tryAccept(queueName); l != nil {
				return l, nil
			}
			select {
			case <-ctx.Done():
				return nil, &azservicebus.Error{Code: azservicebus.CodeTimeout}
			case <-t.C:
			}
		}
	}
}

func (b *fakeBroker) tryAccept(queueName string) *fakeSessionLink {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(queueName)
	b.expireLocks(q)
	if q.heldSessions == nil {
		q.heldSessions = map[string]*fakeSessionLink{}
	}
	now := b.now()
	for _, m := range q.msgs {
		id := deref(m.rm.SessionID)
		if m.locked || m.visibleAt.After(now) || q.heldSessions[id] != nil {
			continue
		}
		l := &fakeSessionLink{fakeReceiver: b.receiver(queueName), session: id}
		q.heldSessions[id] = l
		return l
	}
	return nil
}

type fakeSessionLink struct {
	*fakeReceiver
	session string
}

func (l *fakeSessionLink) SessionID() string { return l.session }

func (l *fakeSessionLink) ReceiveMessages(ctx context.Context, maxMessages int, _ *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		msgs, lost := l.tryReceive(maxMessages)
		if lost {
			return nil, &azservicebus.Error{Code: azservicebus.CodeLockLost}
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// tryReceive locks the session's next messages in sequence order; lost: the session lock ran out.
func (l *fakeSessionLink) tryReceive(maxMessages int) (out []*azservicebus.ReceivedMessage, lost bool) {
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(l.queue)
	b.expireLocks(q)
	if q.heldSessions[l.session] != l {
		return nil, true
	}
	now := b.now()
	for _, m := range q.msgs {
		if len(out) == maxMessages || deref(m.rm.SessionID) != l.session {
			continue
		}
		if m.visibleAt.After(now) {
			continue
		}
		if m.locked {
			continue
		}
		m.locked = true
		m.holder = l
		m.lockedUntil = now.Add(q.cfg.lockDuration)
		m.rm.LockToken = uuid.New()
		m.rm.DeliveryCount++
		out = append(out, snapshot(m, now))
	}
	return out, false
}

func (l *fakeSessionLink) RenewSessionLock(context.Context, *azservicebus.RenewSessionLockOptions) error {
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(l.queue)
	b.expireLocks(q)
	if q.heldSessions[l.session] != l {
		return &azservicebus.Error{Code: azservicebus.CodeLockLost}
	}
	for _, m := range q.msgs {
		if m.locked && m.holder == l {
			m.lockedUntil = b.now().Add(q.cfg.lockDuration)
		}
	}
	return nil
}

func (l *fakeSessionLink) LockedUntil() time.Time {
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(l.queue)
	until := b.now().Add(q.cfg.lockDuration)
	for _, m := range q.msgs {
		if m.locked && m.holder == l && m.lockedUntil.Before(until) {
			until = m.lockedUntil
		}
	}
	return until
}

// Close releases the session; a message it still holds goes back uncounted.
func (l *fakeSessionLink) Close(context.Context) error {
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(l.queue)
	if q.heldSessions[l.session] == l {
		delete(q.heldSessions, l.session)
	}
	for _, m := range q.msgs {
		if m.locked && m.holder == l {
			m.locked, m.holder = false, nil
			m.rm.LockToken = [16]byte{}
			m.rm.DeliveryCount--
		}
	}
	return nil
}
