package worker

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Rerouter is what HandleTriggered needs from the Service Bus backend: publish a scheduled copy
// on the same queue, and park a copy on the dead-letter queue.
type Rerouter interface {
	queue.Publisher
	queue.DeadLetterer
}

// HandleTriggered processes a delivery from the Functions Service Bus trigger, where the host
// owns the lock and settles the message: a 2xx answer completes it, anything else abandons it
// for an immediate redelivery. So the outcome is made true here before answering:
//
//   - Complete: nothing to do; the host completes the message.
//   - RetryLater: a copy is published on the same queue, hidden until RetryAt, with MessageID
//     <EventId>/retry/<n> (duplicate detection drops a second copy of the same retry; see
//     chainID for resubmitted events) and the Attempt property set to n; then the host
//     completes the original.
//   - DeadLetter: a copy goes to the dead-letter queue with the reason, description, failed
//     step and the original's id and delivery count; then the host completes the original.
//
// If the copy cannot be published, the error is returned: answer 500 so the host abandons the
// message and it comes back. Nothing is lost; the event is processed again (at least once).
func (w *Worker) HandleTriggered(ctx context.Context, d Delivery, r Rerouter) (Outcome, error) {
	out := w.Process(ctx, d)
	switch out.Kind {
	case RetryLater:
		m := copyOf(d)
		m.MessageID = fmt.Sprintf("%s/retry/%d", chainID(d, out), out.Attempt)
		m.ScheduledEnqueueTime = out.RetryAt
		m.ApplicationProperties[queue.PropAttempt] = int64(out.Attempt)
		if err := r.Publish(ctx, m); err != nil {
			return out, fmt.Errorf("schedule retry %s: %w", m.MessageID, err)
		}
	case DeadLetter:
		m := copyOf(d)
		m.ApplicationProperties[queue.PropDeadLetterReason] = out.Reason
		m.ApplicationProperties[queue.PropDeadLetterErrorDescription] = out.Description
		m.ApplicationProperties[queue.PropOriginalMessageID] = d.MessageID
		m.ApplicationProperties[queue.PropOriginalDeliveryCount] = int64(d.DeliveryCount)
		if out.Step != "" {
			m.ApplicationProperties[queue.PropFailedStep] = out.Step
		}
		if err := r.DeadLetter(ctx, m, out.Reason, out.Description); err != nil {
			return out, fmt.Errorf("dead-letter %s: %w", d.MessageID, err)
		}
	}
	return out, nil
}

// copyOf makes a message carrying the delivery's body and identity, with its own property map.
func copyOf(d Delivery) *queue.Message {
	props := make(map[string]any, len(d.ApplicationProperties)+6)
	maps.Copy(props, d.ApplicationProperties)
	return &queue.Message{
		MessageID:             d.MessageID,
		CorrelationID:         d.CorrelationID,
		Subject:               d.Subject,
		SessionID:             d.SessionID,
		ContentType:           "application/json",
		Body:                  d.Body,
		ApplicationProperties: props,
	}
}

// chainID is the id retries are named after: the id of the message that started the delivery
// chain, which is the delivery's id without its /retry/<n> suffix. For an event the intake
// published that is the EventId; for one resubmitted from the dead-letter queue it is the
// resubmission's id (<EventId>/resubmit/<t>). Naming retries after the EventId alone would give
// a resubmitted event's first retry the id its first chain already used, and duplicate
// detection would drop it. The EventId serves only when the delivery has no id.
func chainID(d Delivery, out Outcome) string {
	if id, _, _ := strings.Cut(d.MessageID, "/retry/"); id != "" {
		return id
	}
	return out.EventID
}
