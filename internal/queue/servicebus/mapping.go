package servicebus

import (
	"errors"
	"fmt"
	"maps"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// maxMessageIDLength is Service Bus's limit on MessageID (and SessionID).
const maxMessageIDLength = 128

// toSDKMessage maps a queue.Message onto the wire message as DESIGN.md fixes it: MessageID for
// duplicate detection, CorrelationID, Subject, ContentType, SessionID only when set (a session
// queue would otherwise reject it), application properties, and a schedule only when set.
// The property map is copied so the caller may keep using its own.
func toSDKMessage(m *queue.Message) (*azservicebus.Message, error) {
	if m.MessageID == "" {
		// A nil MessageID is sent with no id at all, and duplicate detection then cannot
		// recognise a retried publish.
		return nil, errors.New("message has no MessageID")
	}
	if len(m.MessageID) > maxMessageIDLength {
		return nil, fmt.Errorf("MessageID is %d characters, Service Bus allows %d", len(m.MessageID), maxMessageIDLength)
	}
	out := &azservicebus.Message{
		MessageID:             ptr(m.MessageID),
		CorrelationID:         optional(m.CorrelationID),
		Subject:               optional(m.Subject),
		ContentType:           optional(m.ContentType),
		SessionID:             optional(m.SessionID),
		Body:                  m.Body,
		ApplicationProperties: maps.Clone(m.ApplicationProperties),
	}
	if !m.ScheduledEnqueueTime.IsZero() {
		out.ScheduledEnqueueTime = ptr(m.ScheduledEnqueueTime.UTC())
	}
	return out, nil
}

// fromReceived maps a locked message from the broker to the backend-neutral shape.
func fromReceived(rm *azservicebus.ReceivedMessage) *queue.Received {
	return &queue.Received{
		Message:        messageOf(rm),
		LockToken:      lockTokenString(rm.LockToken),
		DeliveryCount:  int(rm.DeliveryCount),
		SequenceNumber: deref(rm.SequenceNumber),
		EnqueuedTime:   deref(rm.EnqueuedTime),
		LockedUntil:    deref(rm.LockedUntil),
	}
}

func messageOf(rm *azservicebus.ReceivedMessage) queue.Message {
	return queue.Message{
		MessageID:             rm.MessageID,
		CorrelationID:         deref(rm.CorrelationID),
		Subject:               deref(rm.Subject),
		SessionID:             deref(rm.SessionID),
		ContentType:           deref(rm.ContentType),
		Body:                  rm.Body,
		ApplicationProperties: maps.Clone(rm.ApplicationProperties),
		ScheduledEnqueueTime:  deref(rm.ScheduledEnqueueTime),
	}
}

// fromDeadLettered maps a message on the dead-letter queue. Its reason lives in one of two
// places: broker dead letters forwarded from the main queue carry it in the DeadLetterReason
// fields the SDK fills, our own parked copies carry it only as application properties.
func fromDeadLettered(rm *azservicebus.ReceivedMessage) queue.DeadLettered {
	d := queue.DeadLettered{
		Message:        messageOf(rm),
		SequenceNumber: deref(rm.SequenceNumber),
		Reason:         firstNonEmpty(deref(rm.DeadLetterReason), stringProp(rm.ApplicationProperties, queue.PropDeadLetterReason)),
		Description:    firstNonEmpty(deref(rm.DeadLetterErrorDescription), stringProp(rm.ApplicationProperties, queue.PropDeadLetterErrorDescription)),
		DeliveryCount:  int(rm.DeliveryCount),
		DeadLetteredAt: deref(rm.EnqueuedTime),
	}
	// A parked copy is a fresh message on the dead-letter queue; how often the original was
	// delivered is what support wants to see.
	if n, ok := queue.IntProperty(rm.ApplicationProperties, queue.PropOriginalDeliveryCount); ok {
		d.DeliveryCount = n
	}
	return d
}

// withoutDeadLetterProps copies props without the keys that describe a failure rather than the
// event; they are dropped before a message goes back to the main queue. Attempt goes too, so a
// resubmitted event gets a fresh retry budget instead of being dead-lettered again on its first
// transient failure.
func withoutDeadLetterProps(props map[string]any) map[string]any {
	out := maps.Clone(props)
	for _, k := range [...]string{
		queue.PropDeadLetterReason,
		queue.PropDeadLetterErrorDescription,
		queue.PropFailedStep,
		queue.PropOriginalMessageID,
		queue.PropOriginalDeliveryCount,
		queue.PropAttempt,
	} {
		delete(out, k)
	}
	return out
}

// lockTokenString renders a lock token the way Service Bus tools show it (a GUID).
func lockTokenString(t [16]byte) string { return uuid.UUID(t).String() }

func parseLockToken(s string) ([16]byte, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}, fmt.Errorf("lock token %q: %w", s, err)
	}
	return u, nil
}

func stringProp(props map[string]any, key string) string {
	s, _ := props[key].(string)
	return s
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
