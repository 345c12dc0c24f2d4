package local

import (
	"context"
	"fmt"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Settle makes the worker's outcome true on the message d was received as, found by its
// sequence number and lock token (queue.SettleWith maps the outcome onto Complete, Reschedule and
// DeadLetterWith). Each is one transaction; a lock that ran out fails with queue.ErrLockLost and
// changes nothing.
func (q *Queue) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	r := &queue.Received{
		Message:        queue.Message{MessageID: d.MessageID},
		LockToken:      d.LockToken,
		SequenceNumber: d.SequenceNumber,
	}
	if err := queue.SettleWith(ctx, q, r, d, out); err != nil {
		return err
	}
	q.recordOutcome(ctx, d, out)
	return nil
}

// DeadLetterWith moves the locked message r to the dead-letter queue with info's reason,
// description and application properties.
func (q *Queue) DeadLetterWith(ctx context.Context, r *queue.Received, info queue.DeadLetterInfo) error {
	props, err := encodeProps(info.Properties())
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", r.MessageID, err)
	}
	return q.deadLetterReceived(ctx, r, &deadLetterReason{reason: info.Reason, description: info.Description, props: props})
}
