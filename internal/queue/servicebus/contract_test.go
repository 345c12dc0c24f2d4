package servicebus

import (
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue/queuetest"
)

// contractBackend is the Service Bus backend (Publisher, Receiver, DeadLetterQueue) over the
// in-memory broker, laid out as infra/main.bicep lays out the namespace.
type contractBackend struct {
	*Publisher
	*Receiver
	*DeadLetterQueue
	clock *manualClock
}

func (b contractBackend) Now() time.Time          { return b.clock.now() }
func (b contractBackend) Advance(d time.Duration) { b.clock.advance(d) }

func TestBackend_keeps_the_queue_contract(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Backend {
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
		}
	})
}
