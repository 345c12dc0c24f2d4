package local

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Settle makes the worker's outcome true on the message d was received as, found by its
// sequence number and lock token (queue.SettleWith maps the outcome onto Complete, Reschedule and
// DeadLetterWith), and then writes the attempt's history entry, dated by the settlement's
// commit, before it returns. The settlement is one transaction; a lock that ran out fails with
// queue.ErrLockLost and changes nothing, and no entry is written. A history entry that fails to
// write is logged and the settlement stands.
func (q *Queue) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	r := &queue.Received{
		Message:        queue.Message{MessageID: d.MessageID},
		LockToken:      d.LockToken,
		SequenceNumber: d.SequenceNumber,
	}
	entry := q.outcomeEntry(d, out) // measured now: the attempt ran until its settlement
	s := &datedSettlements{q: q}
	if err := queue.SettleWith(ctx, s, r, d, out); err != nil {
		return err
	}
	q.forgetReceived(d.LockToken)
	entry.At = fromNS(s.at)
	q.record(ctx, entry)
	return nil
}

// datedSettlements are the queue's settlements, remembering the time of the commit that made
// the settlement true.
type datedSettlements struct {
	q *Queue
	// at is set by the writer and read only once it has answered without an error.
	at int64
}

func (s *datedSettlements) Complete(ctx context.Context, r *queue.Received) error {
	return s.q.settle(ctx, "complete", r, s.dated(s.q.completeIn(r)))
}

func (s *datedSettlements) Reschedule(ctx context.Context, r *queue.Received, at time.Time, props map[string]any) error {
	if _, err := encodeProps(props); err != nil {
		return fmt.Errorf("reschedule %s: %w", r.MessageID, err)
	}
	return s.q.settle(ctx, "reschedule", r, s.dated(s.q.rescheduleIn(r, at, props)))
}

func (s *datedSettlements) DeadLetterWith(ctx context.Context, r *queue.Received, info queue.DeadLetterInfo) error {
	why, err := deadLetterReasonOf(info)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", r.MessageID, err)
	}
	return s.q.settle(ctx, "dead-letter", r, s.dated(s.q.deadLetterIn(r, why)))
}

// dated is change, remembering the time of the commit it lands in.
func (s *datedSettlements) dated(change func(ctx context.Context, tx *sql.Tx, now int64) error) func(ctx context.Context, tx *sql.Tx, now int64) error {
	return func(ctx context.Context, tx *sql.Tx, now int64) error {
		s.at = now
		return change(ctx, tx, now)
	}
}

// DeadLetterWith moves the locked message r to the dead-letter queue with info's reason,
// description and application properties.
func (q *Queue) DeadLetterWith(ctx context.Context, r *queue.Received, info queue.DeadLetterInfo) error {
	why, err := deadLetterReasonOf(info)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", r.MessageID, err)
	}
	return q.deadLetterReceived(ctx, r, why)
}

func deadLetterReasonOf(info queue.DeadLetterInfo) (*deadLetterReason, error) {
	props, err := encodeProps(info.Properties())
	if err != nil {
		return nil, err
	}
	return &deadLetterReason{reason: info.Reason, description: info.Description, props: props}, nil
}
