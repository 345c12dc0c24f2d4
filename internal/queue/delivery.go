package queue

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// This file is the delivery contract: what a received message is to the worker, what the worker
// decides about it, and the one interface every backend implements to make that decision true.
// It sits here, below both sides, so the backends depend on the contract and never on the worker.

// Delivery is one received queue message as the worker sees it, whichever transport brought it
// (the Functions host's Service Bus trigger, or the consumer loop over a peek-lock receiver).
type Delivery struct {
	MessageID             string
	CorrelationID         string
	Subject               string
	SessionID             string
	Body                  []byte
	DeliveryCount         int // 1 on the first delivery, as Service Bus counts
	ApplicationProperties map[string]any
	EnqueuedTime          time.Time
	// LockToken and SequenceNumber let the Settler that received the message find it again to
	// settle it; the worker never reads them. Empty under the Functions trigger, where the host
	// holds the lock.
	LockToken      string
	SequenceNumber int64
}

// DeliveryOf is the delivery of a message received under a peek-lock.
func DeliveryOf(r *Received) Delivery {
	return Delivery{
		MessageID:             r.MessageID,
		CorrelationID:         r.CorrelationID,
		Subject:               r.Subject,
		SessionID:             r.SessionID,
		Body:                  r.Body,
		DeliveryCount:         r.DeliveryCount,
		ApplicationProperties: r.ApplicationProperties,
		EnqueuedTime:          r.EnqueuedTime,
		LockToken:             r.LockToken,
		SequenceNumber:        r.SequenceNumber,
	}
}

// Attempt is the number of the delivery chain this message belongs to: 1 for the message the
// intake published, n+1 for the n-th scheduled retry (see Attempt).
func (d Delivery) Attempt() int { return Attempt(d.ApplicationProperties) }

// OutcomeKind is what happens to a message once the worker is done with it.
type OutcomeKind int

const (
	// Complete: every step succeeded (or the event needed no work); remove the message.
	Complete OutcomeKind = iota
	// RetryLater: a transient failure outlived the quick in-process retries; deliver the event
	// again at RetryAt as attempt Attempt.
	RetryLater
	// DeadLetter: a permanent failure, a poison message, or attempts exhausted; park it with Reason.
	DeadLetter
)

func (k OutcomeKind) String() string {
	switch k {
	case Complete:
		return "complete"
	case RetryLater:
		return "retry-later"
	case DeadLetter:
		return "dead-letter"
	}
	return "unknown"
}

// Dead-letter reason codes: stable, machine-readable, documented in docs/routes.md.
const (
	ReasonInvalidMessage      = "InvalidMessage"      // body is neither a valid canonical event nor a valid RemoteExecutionContext
	ReasonPermanentFailure    = "PermanentFailure"    // a step failed in a way a retry cannot fix (4xx, record gone)
	ReasonMaxAttemptsExceeded = "MaxAttemptsExceeded" // transient failures outlasted DVRELAY_MAX_ATTEMPTS
	// ReasonUnsupportedMessageFormat: Dataverse posted the context to the queue in .NET Binary or
	// XML; its service endpoint must use the JSON message format.
	ReasonUnsupportedMessageFormat = "UnsupportedMessageFormat"
)

// Reasons the queue gives a message it parks itself, not the worker.
const (
	// ReasonMaxDeliveryCountExceeded is the reason Service Bus (and the embedded queue, which
	// follows it) gives a message delivered MaxDeliveryCount times without being settled.
	ReasonMaxDeliveryCountExceeded = "MaxDeliveryCountExceeded"
	// ReasonTTLExpired is Service Bus's reason for a message that expired, with
	// deadLetteringOnMessageExpiration.
	ReasonTTLExpired = "TTLExpiredException"
	// ReasonDamagedMessage is the embedded queue's reason for a message whose stored properties
	// no longer parse: the queue wrote them itself, so only a damaged file does that.
	ReasonDamagedMessage = "DamagedMessage"
)

// Reasons lists every reason a dead letter can carry: the worker's codes, then the ones the
// queue gives a message it parks itself.
func Reasons() []string {
	return []string{ReasonInvalidMessage, ReasonPermanentFailure, ReasonMaxAttemptsExceeded, ReasonUnsupportedMessageFormat,
		ReasonMaxDeliveryCountExceeded, ReasonTTLExpired, ReasonDamagedMessage}
}

// Outcome is the worker's decision for one delivery. A Settler makes it true.
type Outcome struct {
	Kind        OutcomeKind
	RetryAt     time.Time // RetryLater only
	Attempt     int       // RetryLater: the attempt number of the retry
	Reason      string    // DeadLetter: one of the Reason* codes
	Description string    // DeadLetter: human text for support, with up to 512 bytes of the downstream's answer; never logged
	Step        string    // the step that failed, if any
	EventID     string
	Summary     string // one short line for the host's invocation Logs
}

// Settler makes an Outcome true on the queue the delivery came from. Both of its callers (the
// consumer loop of `handler serve` and the EventWorker function of the Functions host) hand it a
// Delivery and an Outcome, and it is implemented once per backend: the embedded queue
// (local.Queue), Service Bus where the receiver settles (servicebus.Receiver), and Service Bus
// under the Functions trigger, where the host settles (servicebus.TriggerSettler).
//
// Every implementation keeps one contract, checked by queuetest for each backend:
//   - Complete: the message is gone (under the trigger the host completes it after a 2xx).
//   - RetryLater: the event is due again at out.RetryAt as attempt out.Attempt, as a fresh
//     chain with the MessageID RetryID(d.MessageID, out.Attempt) and the Attempt property
//     out.Attempt. Where the backend keeps each record's order it also keeps its place: the
//     embedded queue retries the same row, and none of the record's later events is handed
//     out before it. On a session-enabled Service Bus queue the retry is the same message
//     delivered again instead, its delivery count the attempt (servicebus.SessionReceiver, and
//     httpworker under the Functions host); without sessions the copy joins the queue's tail.
//   - DeadLetter: the message is parked with the application properties of DeadLetterInfoFor.
//
// An error means the outcome is not true: the caller abandons the message (or answers 500 so
// the host does) and it comes back; nothing is lost.
type Settler interface {
	Settle(ctx context.Context, d Delivery, out Outcome) error
}

// Settlements are the three settlements a peek-lock backend offers for an outcome. SettleWith
// maps an outcome onto them, so the mapping is written once for every backend that holds locks.
type Settlements interface {
	Complete(ctx context.Context, r *Received) error
	// Reschedule: see Receiver.Reschedule.
	Reschedule(ctx context.Context, r *Received, at time.Time, props map[string]any) error
	// DeadLetterWith parks r with info's reason, description and properties.
	DeadLetterWith(ctx context.Context, r *Received, info DeadLetterInfo) error
}

// SettleWith makes out true on r, the locked message d was received as, with s's settlements:
// Complete removes it, RetryLater reschedules it at out.RetryAt as attempt out.Attempt, and
// DeadLetter parks it with DeadLetterInfoFor(d, out).
func SettleWith(ctx context.Context, s Settlements, r *Received, d Delivery, out Outcome) error {
	switch out.Kind {
	case Complete:
		return s.Complete(ctx, r)
	case RetryLater:
		return s.Reschedule(ctx, r, out.RetryAt, map[string]any{PropAttempt: int64(out.Attempt)})
	case DeadLetter:
		return s.DeadLetterWith(ctx, r, DeadLetterInfoFor(d, out))
	}
	return fmt.Errorf("settle %s: unknown outcome %v", d.MessageID, out.Kind)
}

// DeadLetterInfoFor is what the dead letter of d records for out, the same in every backend and
// mode: the reason (PermanentFailure when the outcome gave none), a description that names the
// failed step, the step itself, and the id, delivery count and attempt of the delivery parked.
func DeadLetterInfoFor(d Delivery, out Outcome) DeadLetterInfo {
	reason := out.Reason
	if reason == "" {
		reason = ReasonPermanentFailure
	}
	return DeadLetterInfo{
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
