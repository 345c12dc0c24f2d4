package worker

import (
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

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
func DeliveryOf(r *queue.Received) Delivery {
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
// intake published, n+1 for the n-th scheduled retry (see queue.Attempt).
func (d Delivery) Attempt() int { return queue.Attempt(d.ApplicationProperties) }

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

// Dead-letter reason codes: stable, machine-readable, documented in the README.
const (
	ReasonInvalidMessage      = "InvalidMessage"      // body is neither a valid canonical event nor a valid RemoteExecutionContext
	ReasonPermanentFailure    = "PermanentFailure"    // a step failed in a way a retry cannot fix (4xx, record gone)
	ReasonMaxAttemptsExceeded = "MaxAttemptsExceeded" // transient failures outlasted DVRELAY_MAX_ATTEMPTS
	// ReasonUnsupportedMessageFormat: Dataverse posted the context to the queue in .NET Binary or
	// XML; its service endpoint must use the JSON message format.
	ReasonUnsupportedMessageFormat = "UnsupportedMessageFormat"
)

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
