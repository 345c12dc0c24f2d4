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

// Receiver is the peek-lock consumer of one queue, for `handler serve` when Service Bus is
// configured (under the Functions trigger the host receives instead). Reschedule needs to send,
// so it also holds a sender for the same queue.
//
// It keeps each ReceivedMessage it hands out until that message is settled: settling by the
// message goes over the receive link, settling by bare lock token needs a management round trip.
// A token it does not hold (another process received it) is still settled, by token.
type Receiver struct {
	recv   messageReceiver
	sender messageSender
	now    func() time.Time

	receiving sync.Mutex // the SDK refuses concurrent ReceiveMessages calls on one receiver

	mu     sync.Mutex
	locked map[string]*heldMessage // by lock token
}

// heldMessage is a received message not yet settled. lockedUntil is this package's copy of the
// lock expiry, guarded by Receiver.mu: the SDK rewrites msg.LockedUntil in place on renewal,
// outside that mutex, so forgetExpired must not read it while a renewal may be running.
type heldMessage struct {
	msg         *azservicebus.ReceivedMessage
	lockedUntil time.Time
}

var (
	_ queue.Receiver = (*Receiver)(nil)
	_ queue.Settler  = (*Receiver)(nil)
)

// NewReceiver makes a peek-lock Receiver for queueName on client.
func NewReceiver(client *azservicebus.Client, queueName string) (*Receiver, error) {
	r, err := client.NewReceiverForQueue(queueName, nil)
	if err != nil {
		return nil, fmt.Errorf("receiver for queue %s: %w", queueName, err)
	}
	s, err := client.NewSender(queueName, nil)
	if err != nil {
		return nil, fmt.Errorf("sender for queue %s: %w", queueName, err)
	}
	return newReceiver(r, s), nil
}

func newReceiver(r messageReceiver, s messageSender) *Receiver {
	return &Receiver{recv: r, sender: s, now: time.Now, locked: map[string]*heldMessage{}}
}

// Receive waits until at least one message is available or ctx is done, and locks up to max.
func (r *Receiver) Receive(ctx context.Context, max int) ([]*queue.Received, error) {
	r.receiving.Lock()
	msgs, err := r.recv.ReceiveMessages(ctx, max, nil)
	r.receiving.Unlock()
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	now := r.now()
	out := make([]*queue.Received, 0, len(msgs))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetExpired(now)
	for _, m := range msgs {
		rc := fromReceived(m)
		r.locked[rc.LockToken] = &heldMessage{msg: m, lockedUntil: rc.LockedUntil}
		out = append(out, rc)
	}
	return out, nil
}

// forgetExpired drops messages whose lock ran out without a settlement (the caller gave up on
// them), so the map cannot grow without bound. Settling one later still works by token and
// fails with ErrLockLost, as it should. Call with mu held.
func (r *Receiver) forgetExpired(now time.Time) {
	for tok, h := range r.locked {
		if !h.lockedUntil.IsZero() && h.lockedUntil.Before(now) {
			delete(r.locked, tok)
		}
	}
}

// message returns the ReceivedMessage to settle rc by: the one received, or a token-only one.
func (r *Receiver) message(rc *queue.Received) (*azservicebus.ReceivedMessage, error) {
	r.mu.Lock()
	h, ok := r.locked[rc.LockToken]
	r.mu.Unlock()
	if ok {
		return h.msg, nil
	}
	tok, err := parseLockToken(rc.LockToken)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rc.MessageID, err)
	}
	return &azservicebus.ReceivedMessage{LockToken: tok, MessageID: rc.MessageID}, nil
}

func (r *Receiver) forget(rc *queue.Received) {
	r.mu.Lock()
	delete(r.locked, rc.LockToken)
	r.mu.Unlock()
}

// settle runs one settlement of rc. The message is forgotten once settled, and also when the
// lock is lost: either way this process can do nothing more with it.
func (r *Receiver) settle(op string, rc *queue.Received, fn func(*azservicebus.ReceivedMessage) error) error {
	m, err := r.message(rc)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	err = settleError(fn(m))
	if err == nil || errors.Is(err, queue.ErrLockLost) {
		r.forget(rc)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, rc.MessageID, err)
	}
	return nil
}

// Complete removes the message from the queue.
func (r *Receiver) Complete(ctx context.Context, rc *queue.Received) error {
	return r.settle("complete", rc, func(m *azservicebus.ReceivedMessage) error {
		return r.recv.CompleteMessage(ctx, m, nil)
	})
}

// Abandon unlocks the message at once; the broker counts the delivery and dead-letters the
// message once the count passes the queue's MaxDeliveryCount.
func (r *Receiver) Abandon(ctx context.Context, rc *queue.Received) error {
	return r.settle("abandon", rc, func(m *azservicebus.ReceivedMessage) error {
		return r.recv.AbandonMessage(ctx, m, nil)
	})
}

// DeadLetterReceived moves the message to the queue's dead-letter sub-queue with reason and
// description; infra forwards that sub-queue to the shared dead-letter queue.
func (r *Receiver) DeadLetterReceived(ctx context.Context, rc *queue.Received, reason, description string) error {
	return r.deadLetter(ctx, rc, reason, description, nil)
}

// deadLetter is DeadLetterReceived with application properties set on the dead letter as well.
// The broker writes DeadLetterReason and DeadLetterErrorDescription itself, from the reason and
// the description.
func (r *Receiver) deadLetter(ctx context.Context, rc *queue.Received, reason, description string, props map[string]any) error {
	var modify map[string]any
	if len(props) > 0 {
		modify = maps.Clone(props)
		delete(modify, queue.PropDeadLetterReason)
		delete(modify, queue.PropDeadLetterErrorDescription)
	}
	return r.settle("dead-letter", rc, func(m *azservicebus.ReceivedMessage) error {
		return r.recv.DeadLetterMessage(ctx, m, &azservicebus.DeadLetterOptions{
			Reason:             &reason,
			ErrorDescription:   &description,
			PropertiesToModify: modify,
		})
	})
}

// RenewLock extends the lock by the queue's lock duration and updates rc.LockedUntil.
func (r *Receiver) RenewLock(ctx context.Context, rc *queue.Received) error {
	m, err := r.message(rc)
	if err != nil {
		return fmt.Errorf("renew lock: %w", err)
	}
	if err := settleError(r.recv.RenewMessageLock(ctx, m, nil)); err != nil {
		if errors.Is(err, queue.ErrLockLost) {
			r.forget(rc)
		}
		return fmt.Errorf("renew lock %s: %w", rc.MessageID, err)
	}
	if m.LockedUntil != nil {
		rc.LockedUntil = *m.LockedUntil
		r.mu.Lock()
		if h, ok := r.locked[rc.LockToken]; ok {
			h.lockedUntil = rc.LockedUntil
		}
		r.mu.Unlock()
	}
	return nil
}

// Reschedule sends a copy of rc due at `at` and then completes rc. The copy starts a fresh
// delivery chain: its MessageID is queue.RetryID(rc.MessageID, n), where n is the new Attempt
// (queue.RetryAttempt: props' Attempt if the caller set one, else rc's Attempt + 1), so
// duplicate detection does not drop it. If the send fails rc is left locked and the error
// returned; the caller abandons it and nothing is lost. If the complete fails after the send, the event will be processed twice,
// which every step tolerates (idempotent by EventId).
//
// A lock already past its LockedUntil is reported as ErrLockLost before anything is sent: the
// original is on its way back, and a copy as well would only process the event twice.
func (r *Receiver) Reschedule(ctx context.Context, rc *queue.Received, at time.Time, props map[string]any) error {
	if !rc.LockedUntil.IsZero() && !r.now().Before(rc.LockedUntil) {
		return fmt.Errorf("reschedule %s: lock expired at %s: %w", rc.MessageID, rc.LockedUntil.Format(time.RFC3339), queue.ErrLockLost)
	}
	c := rc.Message
	c.ApplicationProperties = maps.Clone(rc.ApplicationProperties)
	if c.ApplicationProperties == nil {
		c.ApplicationProperties = map[string]any{}
	}
	maps.Copy(c.ApplicationProperties, props)
	attempt := queue.RetryAttempt(rc.ApplicationProperties, props)
	c.ApplicationProperties[queue.PropAttempt] = int64(attempt)
	c.MessageID = queue.RetryID(rc.MessageID, attempt)
	c.ScheduledEnqueueTime = at
	if err := send(ctx, r.sender, &c); err != nil {
		return fmt.Errorf("reschedule %s as %s: %w", rc.MessageID, c.MessageID, err)
	}
	return r.Complete(ctx, rc)
}

// Settle makes the worker's outcome true on the message d was received as, with this
// receiver's settlements (queue.SettleWith maps the outcome onto them): Complete, Reschedule, or
// the queue's own dead-letter sub-queue. A settlement after the lock was lost fails with
// queue.ErrLockLost and changes nothing.
func (r *Receiver) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	return queue.SettleWith(ctx, r, r.receivedOf(d), d, out)
}

// DeadLetterWith moves rc to the queue's dead-letter sub-queue with info's reason, description
// and application properties.
func (r *Receiver) DeadLetterWith(ctx context.Context, rc *queue.Received, info queue.DeadLetterInfo) error {
	return r.deadLetter(ctx, rc, info.Reason, info.Description, info.Properties())
}

// receivedOf finds the locked message d was made from: the one this receiver holds under d's
// lock token, with the lock expiry its renewals recorded, or else one made from d alone, which
// is settled by token.
func (r *Receiver) receivedOf(d queue.Delivery) *queue.Received {
	rc := &queue.Received{
		LockToken:      d.LockToken,
		DeliveryCount:  d.DeliveryCount,
		SequenceNumber: d.SequenceNumber,
		EnqueuedTime:   d.EnqueuedTime,
	}
	r.mu.Lock()
	h, held := r.locked[d.LockToken]
	if held {
		rc.LockedUntil = h.lockedUntil
	}
	r.mu.Unlock()
	if held {
		rc.Message = messageOf(h.msg)
	} else {
		rc.Message = *copyOfDelivery(d)
	}
	return rc
}

// Close detaches the links. Messages still locked go back to the queue when their locks expire.
func (r *Receiver) Close(ctx context.Context) error {
	return errors.Join(r.recv.Close(ctx), r.sender.Close(ctx))
}

// settleError maps the SDK's lock-lost error to queue.ErrLockLost, keeping the SDK error in the
// chain so errors.As still finds the *azservicebus.Error.
func settleError(err error) error {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeLockLost {
		return fmt.Errorf("%w: %w", queue.ErrLockLost, err)
	}
	return err
}
