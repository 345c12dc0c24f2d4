// Package queue holds what every queue backend shares: the message a publisher sends, the small
// interfaces the intake and the worker depend on, the errors and stats the support tools read,
// and the rules for naming retries and resubmissions and for reading the Attempt property. The
// backends live in queue/servicebus (Azure Service Bus) and queue/local (the embedded SQLite
// queue); each applies the worker's outcomes through queue.Settler.
package queue

import (
	"context"
	"errors"
	"time"
)

// Application property names written on messages. They mirror Service Bus's own names where
// Service Bus has one, so support engineers see the same keys in both backends.
const (
	PropAttempt                    = "Attempt"                    // 1 for the first delivery chain, +1 per scheduled retry
	PropDeadLetterReason           = "DeadLetterReason"           // stable reason code
	PropDeadLetterErrorDescription = "DeadLetterErrorDescription" // human text, no attribute values
	PropFailedStep                 = "FailedStep"                 // the route step that failed, if any
	PropOriginalMessageID          = "OriginalMessageId"          // MessageID of the message that was parked
	PropOriginalDeliveryCount      = "OriginalDeliveryCount"      // its delivery count when parked
	PropEventName                  = "EventName"
	PropEntity                     = "Entity"
)

// Message is what a publisher sends. It maps 1:1 onto azservicebus.Message.
type Message struct {
	MessageID     string // duplicate detection key: the EventId, or <EventId>/retry/<n>
	CorrelationID string
	Subject       string // the EventName
	SessionID     string // optional: the RecordId, for per-record order on session queues
	ContentType   string // application/json
	Body          []byte
	// ApplicationProperties carries AMQP simple values only: string, bool, int64, float64, time.Time.
	ApplicationProperties map[string]any
	// ScheduledEnqueueTime, when not zero, hides the message until that time (back-off).
	ScheduledEnqueueTime time.Time
}

// Publisher puts a message on the main queue. Publish returns only once the broker (or the
// local queue's fsync) holds the message; a duplicate MessageID inside the window is accepted
// and dropped, as Service Bus does.
type Publisher interface {
	Publish(ctx context.Context, m *Message) error
}

// DuplicateReporter is a Publisher that can also say whether the message it accepted was
// dropped as a duplicate within the window. The embedded queue can; Service Bus drops a
// duplicate without telling the sender, so there nobody can say.
type DuplicateReporter interface {
	PublishReporting(ctx context.Context, m *Message) (duplicate bool, err error)
}

// DeadLetterer parks a message on the dead-letter queue with a reason and a description.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, m *Message, reason, description string) error
}

// Received is a message under a peek-lock: invisible to other receivers until it is settled or
// its lock expires.
type Received struct {
	Message
	LockToken      string
	DeliveryCount  int // 1 on the first delivery
	SequenceNumber int64
	EnqueuedTime   time.Time
	LockedUntil    time.Time
}

// Receiver is the peek-lock consumer side of a queue and the settlements every backend offers.
// The worker's outcomes reach them through the backend's queue.Settler, which names retries
// and writes dead-letter properties the same way everywhere. Settling with a lock that expired
// or was never given fails with ErrLockLost.
type Receiver interface {
	// Receive waits until at least one message is available (or ctx is done) and locks up to max.
	Receive(ctx context.Context, max int) ([]*Received, error)
	Complete(ctx context.Context, r *Received) error
	// Abandon releases the lock at once; the delivery count stays raised, and a message whose
	// count reaches the max delivery count is dead-lettered with reason MaxDeliveryCountExceeded.
	Abandon(ctx context.Context, r *Received) error
	// Reschedule settles r and makes the event due again at `at` as a fresh delivery chain with
	// the given application properties merged in (the worker's retry later): its MessageID is
	// RetryID(r.MessageID, n) and its Attempt n, where n is RetryAttempt(r's properties, props).
	Reschedule(ctx context.Context, r *Received, at time.Time, props map[string]any) error
	// DeadLetterReceived moves r to the dead-letter queue with a reason and a description.
	DeadLetterReceived(ctx context.Context, r *Received, reason, description string) error
	// RenewLock extends the lock of r by the lock duration and updates r.LockedUntil.
	RenewLock(ctx context.Context, r *Received) error
}

// DeadLettered is a parked message as support sees it.
type DeadLettered struct {
	Message
	SequenceNumber int64
	Reason         string
	Description    string
	DeliveryCount  int
	DeadLetteredAt time.Time
}

// Errors every backend reports the same way, so callers (the admin API, the dlq command) need
// not know which backend answered.
var (
	// ErrLockLost reports a settlement on a lock that expired or is unknown: the message has
	// gone back to the queue (or to the dead-letter queue) and will be delivered again.
	ErrLockLost = errors.New("queue: lock lost")
	// ErrNotFound reports a dead-letter sequence number that is not (or no longer) parked.
	ErrNotFound = errors.New("dead-lettered message not found")
	// ErrDirInUse reports that another process owns the queue's storage (the embedded queue's
	// data directory): ask that process instead.
	ErrDirInUse = errors.New("queue data directory is in use by another process")
)

// Stats is a snapshot of a queue for health checks and alerts.
type Stats struct {
	Queued          int           // available or locked
	Scheduled       int           // waiting for their scheduled time
	DeadLettered    int           // parked for support
	OldestQueuedAge time.Duration // how long the oldest queued message has been due; 0 when none
}

// DeadLetterInfo is why and where a delivery failed, as its dead letter records it. Every backend
// writes all of it as application properties, in both modes, so support reads the same keys
// whichever path parked the message.
type DeadLetterInfo struct {
	Reason                string // DeadLetterReason: a stable code
	Description           string // DeadLetterErrorDescription: human text, no attribute values
	FailedStep            string // FailedStep: the route step that failed; empty when none did
	OriginalMessageID     string // OriginalMessageId
	OriginalDeliveryCount int    // OriginalDeliveryCount: its delivery count when parked
	Attempt               int    // Attempt: the delivery chain that failed, 1 for the first
}

// Properties returns the info as application properties, integers as int64. FailedStep is left
// out when no step failed.
func (i DeadLetterInfo) Properties() map[string]any {
	p := map[string]any{
		PropDeadLetterReason:           i.Reason,
		PropDeadLetterErrorDescription: i.Description,
		PropOriginalMessageID:          i.OriginalMessageID,
		PropOriginalDeliveryCount:      int64(i.OriginalDeliveryCount),
		PropAttempt:                    int64(max(i.Attempt, 1)),
	}
	if i.FailedStep != "" {
		p[PropFailedStep] = i.FailedStep
	}
	return p
}
