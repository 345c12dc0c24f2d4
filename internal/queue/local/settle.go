package local

import (
	"context"
	"fmt"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Settle makes the worker's outcome true on the message d was received as, found by its
// sequence number and lock token: Complete removes it, RetryLater reschedules it at out.RetryAt
// as attempt out.Attempt (see Reschedule for its MessageID), DeadLetter moves it to the
// dead-letter queue with worker.DeadLetterInfo's properties. Each is one transaction; a lock
// that ran out fails with queue.ErrLockLost and changes nothing.
func (q *Queue) Settle(ctx context.Context, d worker.Delivery, out worker.Outcome) error {
	r := &queue.Received{
		Message:        queue.Message{MessageID: d.MessageID},
		LockToken:      d.LockToken,
		SequenceNumber: d.SequenceNumber,
	}
	switch out.Kind {
	case worker.Complete:
		return q.Complete(ctx, r)
	case worker.RetryLater:
		return q.Reschedule(ctx, r, out.RetryAt, map[string]any{queue.PropAttempt: int64(out.Attempt)})
	case worker.DeadLetter:
		info := worker.DeadLetterInfo(d, out)
		props, err := encodeProps(info.Properties())
		if err != nil {
			return fmt.Errorf("dead-letter %s: %w", d.MessageID, err)
		}
		return q.deadLetterReceived(ctx, r, &deadLetterReason{reason: info.Reason, description: info.Description, props: props})
	}
	return fmt.Errorf("settle %s: unknown outcome %v", d.MessageID, out.Kind)
}
