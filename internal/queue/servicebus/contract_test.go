package servicebus

import (
	"context"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/queuetest"
)

// contractBackend is the Service Bus backend (Publisher, Receiver, DeadLetterQueue) over the
// in-memory broker, laid out as infra/main.bicep lays out the namespace.
type contractBackend struct {
	*Publisher
	*Receiver
	*DeadLetterQueue
	clock  *manualClock
	broker *fakeBroker
}

func (b contractBackend) Now() time.Time          { return b.clock.now() }
func (b contractBackend) Advance(d time.Duration) { b.clock.advance(d) }

func TestBackend_keeps_the_queue_contract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Backend { return newContractBackend() })
}

// triggerBackend is the backend as the Functions trigger sees it: outcomes go through the
// TriggerSettler, and then the host completes the message, as it does when the handler answers 200.
type triggerBackend struct {
	contractBackend
	trigger *TriggerSettler
}

func (b triggerBackend) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	if err := b.trigger.Settle(ctx, d, out); err != nil {
		return err
	}
	return b.Complete(ctx, &queue.Received{Message: queue.Message{MessageID: d.MessageID}, LockToken: d.LockToken})
}

func TestTriggerSettler_keeps_the_settle_contract(t *testing.T) {
	queuetest.RunSettle(t, func(t *testing.T) queuetest.Backend {
		b := newContractBackend()
		return triggerBackend{contractBackend: b, trigger: NewTriggerSettler(b.Publisher, b.DeadLetterQueue)}
	})
}

func newContractBackend() contractBackend {
	clock := newManualClock()
	broker := newFakeBroker()
	broker.now = clock.now
	broker.addQueue(mainQueue, fakeQueueConfig{
		lockDuration:     queuetest.LockDuration,
		maxDeliveryCount: queuetest.MaxDeliveryCount,
		dupWindow:        queuetest.DuplicateWindow,
		forwardDLQTo:     dlqQueue,
	})
	broker.addQueue(dlqQueue, fakeQueueConfig{
		lockDuration:     queuetest.LockDuration,
		maxDeliveryCount: 100,
		dupWindow:        queuetest.DuplicateWindow,
	})
	recv := newReceiver(broker.receiver(mainQueue), broker.sender(mainQueue))
	recv.now = clock.now
	dlq := newDeadLetterQueue(broker.sender(dlqQueue), broker.receiver(dlqQueue), broker.sender(mainQueue))
	dlq.now = clock.now
	dlq.idleWait = 50 * time.Millisecond // how long a scan waits before it calls a sequence number missing
	return contractBackend{
		Publisher:       newPublisher(broker.sender(mainQueue)),
		Receiver:        recv,
		DeadLetterQueue: dlq,
		clock:           clock,
		broker:          broker,
	}
}

// sessionBackend is the Service Bus backend on a session-enabled queue, as `handler serve`
// consumes it with sessions on: the SessionReceiver over the in-memory broker.
type sessionBackend struct {
	*Publisher
	*SessionReceiver
	*DeadLetterQueue
	clock *manualClock
}

func (b sessionBackend) Now() time.Time          { return b.clock.now() }
func (b sessionBackend) Advance(d time.Duration) { b.clock.advance(d) }

func TestSessionReceiver_keeps_each_record_in_order(t *testing.T) {
	queuetest.RunOrder(t, func(t *testing.T) queuetest.Backend {
		b := newContractBackend()
		recv := newSessionReceiver(b.broker.acceptNextSession(mainQueue), SessionOptions{
			Places: 4, IdleWait: 20 * time.Millisecond, Now: b.clock.now, Tick: 5 * time.Millisecond,
		})
		t.Cleanup(func() { _ = recv.Close(context.Background()) })
		return sessionBackend{Publisher: b.Publisher, SessionReceiver: recv, DeadLetterQueue: b.DeadLetterQueue, clock: b.clock}
	})
}
