package queue

import (
	"context"
	"time"
)

// What happened to an event, as a backend that keeps history records it (HistoryEntry.Kind). The
// story of one event reads accepted → an attempt per delivery chain (completed, retrying or
// dead-lettered) → resubmitted → attempts again.
const (
	HistAccepted     = "accepted"      // the intake's publish was stored
	HistCompleted    = "completed"     // an attempt ended with every step done
	HistRetrying     = "retrying"      // an attempt failed transiently; a retry is scheduled
	HistDeadLettered = "dead-lettered" // an attempt ended on the dead-letter queue
	HistResubmitted  = "resubmitted"   // support sent a dead letter back to the queue
	HistPurged       = "purged"        // support deleted a dead letter for good
)

// MaxHistoryDetail bounds the answer excerpt an entry keeps, in bytes: enough for a downstream's
// error message, never a whole answer.
const MaxHistoryDetail = 512

// HistoryEntry is one thing that happened to one event.
type HistoryEntry struct {
	At            time.Time
	Kind          string // Hist*
	EventID       string
	MessageID     string
	RecordID      string
	CorrelationID string
	Entity        string
	EventName     string
	Attempt       int           // the attempt an outcome closes; 0 for accepted, resubmitted, purged
	Step          string        // the step that failed, if any
	Status        int           // the downstream's HTTP status when the failure names one
	Duration      time.Duration // from receive to settle; 0 when not measured
	Detail        string        // the cause with the downstream's answer excerpt, at most MaxHistoryDetail bytes
}

// HistoryQuery selects entries: those of any event whose EventId, RecordId or CorrelationId
// equals Key, oldest first, at most Limit (DefaultHistoryLimit when not positive).
type HistoryQuery struct {
	Key   string
	Limit int
}

// DefaultHistoryLimit bounds one history query when it sets no limit.
const DefaultHistoryLimit = 1000

// Activity counts entries by kind in equal time buckets: Counts[i][kind] is how many happened in
// [Since + i*Bucket, Since + (i+1)*Bucket).
type Activity struct {
	Since  time.Time
	Bucket time.Duration
	Counts []map[string]int
}

// Total is how many entries of kind the activity holds.
func (a Activity) Total(kind string) int {
	n := 0
	for _, c := range a.Counts {
		n += c[kind]
	}
	return n
}

// HistoryReader is what a backend that keeps events' history offers support. Service Bus keeps
// none (Application Insights does); the embedded queue keeps it, bounded by age and count.
type HistoryReader interface {
	EventHistory(ctx context.Context, q HistoryQuery) ([]HistoryEntry, error)
	Activity(ctx context.Context, since time.Time, bucket time.Duration, buckets int) (Activity, error)
}

// DeadLetterGroup is how many dead letters share a reason, a failed step and an entity.
type DeadLetterGroup struct {
	Reason, Step, Entity string
	Count                int
	Oldest, Newest       time.Time
}

// DeadLetterGrouper groups dead letters at the source, so a large dead-letter queue is counted
// without being read whole. Backends that cannot are grouped by reading them.
type DeadLetterGrouper interface {
	GroupDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetterGroup, error)
}

// DeadLetterReader reads dead letters without writing anything, so a page that shows them does
// not compete with the intake for the queue's writer. What it leaves out is what QueryDeadLetters
// would first have moved to the dead-letter queue (a message whose last lock just ran out); the
// next receive moves it.
type DeadLetterReader interface {
	ReadDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLettered, error)
}
