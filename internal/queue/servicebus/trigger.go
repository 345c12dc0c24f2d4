package servicebus

import (
	"context"
	"fmt"
	"maps"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// TriggerSettler applies the worker's outcomes under the Functions Service Bus trigger, where the
// host owns the message lock and settles from the HTTP status alone: a 2xx completes the message,
// anything else abandons it for an immediate redelivery. The handler cannot settle, so each
// outcome is made true with a copy before the answer:
//
//   - Complete: nothing to do; the host completes the message.
//   - RetryLater: a copy goes on the main queue, hidden until RetryAt, named
//     queue.RetryID(MessageID, Attempt) with the Attempt property set (duplicate detection drops
//     a second copy of the same retry, should the host redeliver the original); then the host
//     completes the original.
//   - DeadLetter: a copy goes to the dead-letter queue with worker.DeadLetterInfo's properties,
//     keeping the original's MessageID (a second park of the same delivery is a duplicate);
//     then the host completes the original.
//
// When the copy cannot be sent Settle returns the error: the handler answers 500, the host
// abandons the message and it comes back. Nothing is lost; the event is processed again.
type TriggerSettler struct {
	main        queue.Publisher    // the main queue, for scheduled retries
	deadLetters queue.DeadLetterer // the dead-letter queue
}

var _ queue.Settler = (*TriggerSettler)(nil)

// NewTriggerSettler makes the settler that publishes retries with main and parks dead letters
// with deadLetters (a *DeadLetterQueue in production).
func NewTriggerSettler(main queue.Publisher, deadLetters queue.DeadLetterer) *TriggerSettler {
	return &TriggerSettler{main: main, deadLetters: deadLetters}
}

// Settle makes out true for d; see TriggerSettler.
func (s *TriggerSettler) Settle(ctx context.Context, d queue.Delivery, out queue.Outcome) error {
	switch out.Kind {
	case queue.Complete:
		return nil
	case queue.RetryLater:
		m := copyOfDelivery(d)
		id := d.MessageID
		if id == "" {
			id = out.EventID // a delivery without an id is named after its event
		}
		m.MessageID = queue.RetryID(id, out.Attempt)
		m.ScheduledEnqueueTime = out.RetryAt
		m.ApplicationProperties[queue.PropAttempt] = int64(out.Attempt)
		if err := s.main.Publish(ctx, m); err != nil {
			return fmt.Errorf("schedule retry %s: %w", m.MessageID, err)
		}
		return nil
	case queue.DeadLetter:
		info := queue.DeadLetterInfoFor(d, out)
		m := copyOfDelivery(d)
		maps.Copy(m.ApplicationProperties, info.Properties())
		if err := s.deadLetters.DeadLetter(ctx, m, info.Reason, info.Description); err != nil {
			return fmt.Errorf("dead-letter %s: %w", d.MessageID, err)
		}
		return nil
	}
	return fmt.Errorf("settle %s: unknown outcome %v", d.MessageID, out.Kind)
}

// copyOfDelivery makes a message carrying the delivery's body and identity, with its own
// property map. The worker only handles JSON, so the content type is set without asking.
func copyOfDelivery(d queue.Delivery) *queue.Message {
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
