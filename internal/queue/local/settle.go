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
// DeadLetterWith), and writes the attempt's history entry in the same transaction: one change
// for the writer per settlement, not two. Each is one transaction; a lock that ran out fails
// with queue.ErrLockLost and changes nothing, the history included.
func (q *Queue) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	r := &queue.Received{
		Message:        queue.Message{MessageID: d.MessageID},
		LockToken:      d.LockToken,
		SequenceNumber: d.SequenceNumber,
	}
	s := recordingSettlements{q: q, d: d, entry: q.outcomeEntry(d, out)}
	if err := queue.SettleWith(ctx, s, r, d, out); err != nil {
		return err
	}
	q.forgetReceived(d.LockToken)
	return nil
}

// recordingSettlements are the queue's settlements with the history entry of the outcome
// written inside each.
type recordingSettlements struct {
	q     *Queue
	d     queue.Delivery
	entry queue.HistoryEntry
}

func (s recordingSettlements) Complete(ctx context.Context, r *queue.Received) error {
	return s.q.settle(ctx, "complete", r, s.recorded(s.q.completeIn(r)))
}

func (s recordingSettlements) Reschedule(ctx context.Context, r *queue.Received, at time.Time, props map[string]any) error {
	if _, err := encodeProps(props); err != nil {
		return fmt.Errorf("reschedule %s: %w", r.MessageID, err)
	}
	return s.q.settle(ctx, "reschedule", r, s.recorded(s.q.rescheduleIn(r, at, props)))
}

func (s recordingSettlements) DeadLetterWith(ctx context.Context, r *queue.Received, info queue.DeadLetterInfo) error {
	why, err := deadLetterReasonOf(info)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", r.MessageID, err)
	}
	return s.q.settle(ctx, "dead-letter", r, s.recorded(s.q.deadLetterIn(r, why)))
}

// recorded is change followed by the history entry, dated by the commit that makes the outcome
// true. An entry that fails to write is logged and the settlement stands: the failed statement
// alone is undone, and a missing line of history must never cost a redelivery.
func (s recordingSettlements) recorded(change func(ctx context.Context, tx *sql.Tx, now int64) error) func(ctx context.Context, tx *sql.Tx, now int64) error {
	return func(ctx context.Context, tx *sql.Tx, now int64) error {
		if err := change(ctx, tx, now); err != nil {
			return err
		}
		if err := s.q.insertHistory(ctx, tx, s.entry, now); err != nil {
			s.q.log.WarnContext(ctx, "history: the outcome is settled but its history entry was not written",
				"messageId", s.d.MessageID, "error", err)
		}
		return nil
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
