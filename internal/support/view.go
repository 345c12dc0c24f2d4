package support

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// DeadLetter is a dead letter as support tooling shows it: ids, names, reasons and what the
// event was. The body is included because support needs it to decide; it never reaches the logs.
type DeadLetter struct {
	SequenceNumber int64     `json:"sequenceNumber"`
	DeadLetteredAt time.Time `json:"deadLetteredAt"`
	EventID        string    `json:"eventId"`
	EventName      string    `json:"eventName,omitempty"`
	Entity         string    `json:"entity,omitempty"`
	RecordID       string    `json:"recordId,omitempty"`
	// OrderKey is the record whose order the event kept (queue.OrderKey): while it was queued,
	// the record's later events waited behind it.
	OrderKey      string          `json:"orderKey,omitempty"`
	Reason        string          `json:"reason"`
	Cause         string          `json:"cause"`
	Description   string          `json:"description"`
	FailedStep    string          `json:"failedStep,omitempty"`
	Attempt       int             `json:"attempt"`
	DeliveryCount int             `json:"deliveryCount"`
	MessageID     string          `json:"messageId"`
	CorrelationID string          `json:"correlationId"`
	Subject       string          `json:"subject"`
	Properties    map[string]any  `json:"properties,omitempty"`
	Body          json.RawMessage `json:"body,omitempty"`
}

// View is d as support sees it.
func View(d queue.DeadLettered) DeadLetter {
	step, _ := d.ApplicationProperties[queue.PropFailedStep].(string)
	v := DeadLetter{
		SequenceNumber: d.SequenceNumber, MessageID: d.MessageID, CorrelationID: d.CorrelationID,
		EventID: queue.BaseID(d.MessageID), EventName: stringProp(d.ApplicationProperties, queue.PropEventName),
		Entity: stringProp(d.ApplicationProperties, queue.PropEntity), FailedStep: step,
		Subject: d.Subject, Reason: d.Reason, Description: d.Description, Cause: Cause(d.Description, step),
		Attempt:       queue.Attempt(d.ApplicationProperties),
		DeliveryCount: d.DeliveryCount, DeadLetteredAt: d.DeadLetteredAt, Properties: d.ApplicationProperties,
	}
	if v.EventName == "" {
		v.EventName = d.Subject // the broker's own dead letters of older messages may lack the property
	}
	v.OrderKey = queue.OrderKeyOf(d.ApplicationProperties)
	if json.Valid(d.Body) {
		v.Body = d.Body
		var ev struct {
			RecordID string `json:"RecordId"`
		}
		if json.Unmarshal(d.Body, &ev) == nil {
			v.RecordID = ev.RecordID
		}
		if v.OrderKey == "" {
			v.OrderKey = queue.OrderKey(v.Entity, v.RecordID)
		}
	} else if len(d.Body) > 0 {
		b, _ := json.Marshal(string(d.Body)) // a poison body is shown as text
		v.Body = b
	}
	return v
}

func stringProp(props map[string]any, name string) string {
	s, _ := props[name].(string)
	return s
}

// repeatedPrefix matches the places the worker and the settlers put in front of a failure, as
// they nest: "step s: ", "route r step s: ", "attempt n of m failed: ".
var repeatedPrefix = regexp.MustCompile(`^(?:(?:step [^\s:]+|route [^\s:]+ step [^\s:]+|attempt \d+ of \d+ failed): )+`)

// Cause is what went wrong, without the prefixes that say where: the failed step once, then the
// failure ("erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request" rather than "step erp-sync: route
// credit-check step erp-sync: POST …"). The attempt count and the step have fields of their own.
func Cause(description, failedStep string) string {
	c := repeatedPrefix.ReplaceAllString(description, "")
	if failedStep != "" && c != "" {
		return failedStep + ": " + c
	}
	return c
}

// Detail is one dead letter with the history of its event: the message ids the backend knows
// for it, retries and resubmits, in the order they happened.
type Detail struct {
	DeadLetter
	History []Sighting `json:"history"`
	// CompletionsKept says whether the backend remembers each record's completed events (the
	// embedded queue does, Service Bus does not); only then can NewerCompleted be known.
	CompletionsKept bool `json:"completionsKept"`
	// NewerCompleted is an event of the same record that completed after this one was queued:
	// resubmitting this one would apply older data over newer.
	NewerCompleted *Completion `json:"newerCompleted,omitempty"`
}

// Completion is the latest completed event of a record (queue.Completion).
type Completion struct {
	MessageID   string    `json:"messageId"`
	CompletedAt time.Time `json:"completedAt"`
}

// RecordOf names the record a dead letter held in order: its order key, else its record id.
func RecordOf(d DeadLetter) string {
	if d.OrderKey != "" {
		return d.OrderKey
	}
	return d.RecordID
}

// NewerWarning is what support must know before resubmitting d, or "" when nothing is known
// against it. Every face (handler dlq show and resubmit, the console's preview) says it in
// these words.
func NewerWarning(d DeadLetter, c *Completion) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("warning: dead letter %d is older than event %s of record %s, which completed %s: "+
		"resubmitting it applies older data over newer", d.SequenceNumber, queue.BaseID(c.MessageID),
		RecordOf(d), c.CompletedAt.UTC().Format(time.RFC3339))
}

// Sighting is one message id of an event's history (queue.Sighting).
type Sighting struct {
	MessageID      string     `json:"messageId"`
	Attempt        int        `json:"attempt"`
	State          string     `json:"state"`
	SequenceNumber int64      `json:"sequenceNumber,omitempty"`
	At             *time.Time `json:"at,omitempty"`
}

// HistoryView is h as the routes show it.
func HistoryView(h []queue.Sighting) []Sighting {
	out := make([]Sighting, 0, len(h))
	for _, s := range h {
		v := Sighting{MessageID: s.MessageID, Attempt: s.Attempt, State: s.State, SequenceNumber: s.Seq}
		if !s.At.IsZero() {
			at := s.At
			v.At = &at
		}
		out = append(out, v)
	}
	return out
}
