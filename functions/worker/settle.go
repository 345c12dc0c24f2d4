package worker

import (
	"context"
	"strings"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Settler makes an Outcome true on the queue the delivery came from. It is declared here, next
// to Delivery and Outcome, because both of its callers (the consumer loop of `handler serve` and
// the EventWorker function of the Functions host) hand it exactly those, and it is implemented
// once per backend at the edge: the embedded queue (local.Queue), Service Bus where the receiver
// settles (servicebus.Receiver), and Service Bus under the Functions trigger, where the host
// settles (servicebus.TriggerSettler).
//
// Every implementation keeps one contract, checked by queuetest for each backend:
//   - Complete: the message is gone (under the trigger the host completes it after a 2xx).
//   - RetryLater: the event is due again at out.RetryAt as a fresh delivery chain, with the
//     MessageID queue.RetryID(d.MessageID, out.Attempt) and the Attempt property out.Attempt.
//   - DeadLetter: the message is parked with the application properties of DeadLetterInfo.
//
// An error means the outcome is not true: the caller abandons the message (or answers 500 so
// the host does) and it comes back; nothing is lost.
type Settler interface {
	Settle(ctx context.Context, d Delivery, out Outcome) error
}

// DeadLetterInfo is what the dead letter of d records for out, the same in every backend and
// mode: the reason (PermanentFailure when the outcome gave none), a description that names the
// failed step, the step itself, and the id, delivery count and attempt of the delivery parked.
func DeadLetterInfo(d Delivery, out Outcome) queue.DeadLetterInfo {
	reason := out.Reason
	if reason == "" {
		reason = ReasonPermanentFailure
	}
	return queue.DeadLetterInfo{
		Reason:                reason,
		Description:           describeFailure(out.Step, out.Description),
		FailedStep:            out.Step,
		OriginalMessageID:     d.MessageID,
		OriginalDeliveryCount: d.DeliveryCount,
		Attempt:               d.Attempt(),
	}
}

// describeFailure puts the failed step in front of the description unless the description
// already names it (the worker's own descriptions do: "route r step s: ..."): support reading
// only the description must still see where it broke.
func describeFailure(step, description string) string {
	switch {
	case step == "" || strings.Contains(description, "step "+step+":"):
		return description
	case description == "":
		return "step " + step
	}
	return "step " + step + ": " + description
}
