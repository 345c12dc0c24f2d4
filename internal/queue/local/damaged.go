package local

import (
	"context"
	"fmt"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// deadLetterDamaged dead-letters r, whose stored properties failed to decode with cause, at once
// and says why: another delivery would find it as damaged, and waiting for MaxDeliveryCount
// would only hold it for that many lock durations and then blame the deliveries. The error is
// what still went wrong: the message then keeps its lock, and MaxDeliveryCount dead-letters it
// in the end.
func (q *Queue) deadLetterDamaged(ctx context.Context, r *queue.Received, cause error) error {
	description := fmt.Sprintf("the stored message is damaged: its properties no longer parse (%v); its body is as it was queued", cause)
	// The receive's caller may be leaving; the settlement still has to land.
	err := q.DeadLetterReceived(context.WithoutCancel(ctx), r, queue.ReasonDamagedMessage, description)
	if err != nil {
		q.log.ErrorContext(ctx, "a stored message is damaged and could not be dead-lettered; it will be after its max delivery count",
			"messageId", r.MessageID, "sequenceNumber", r.SequenceNumber, "deliveryCount", r.DeliveryCount,
			"error", cause, "deadLetterError", err)
		return fmt.Errorf("message %s (sequence number %d): stored properties: %w; dead-letter it: %w", r.MessageID, r.SequenceNumber, cause, err)
	}
	q.log.ErrorContext(ctx, "a stored message is damaged; dead-lettered",
		"messageId", r.MessageID, "sequenceNumber", r.SequenceNumber, "reason", queue.ReasonDamagedMessage, "error", cause)
	return nil
}
