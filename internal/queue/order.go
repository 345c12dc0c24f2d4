package queue

import (
	"context"
	"strings"
	"time"
)

// PropOrderKey names the application property that carries a message's order key, so every
// backend, the worker and support read the same key whichever transport brought the message.
const PropOrderKey = "OrderKey"

// OrderKey is the key a record's events are ordered on: its table's logical name and its id,
// "<entity>/<recordid>", lower-cased so the two spellings of a GUID Dataverse uses name one
// record. An event that names no record has no order to keep: the key is empty, and such a
// message never waits for another.
//
// The events of one key reach the worker one at a time, in the order the intake accepted
// them, and a transient failure keeps the message's place: the next event of the key waits
// until it is completed or dead-lettered. Events of different keys run side by side.
func OrderKey(entity, recordID string) string {
	if strings.TrimSpace(recordID) == "" {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(entity)) + "/" + strings.ToLower(strings.TrimSpace(recordID))
}

// OrderKeyOf reads the order key a message carries; empty when it carries none.
func OrderKeyOf(props map[string]any) string {
	return stringProperty(props, PropOrderKey)
}

// Completion is the latest event of a record known to have completed.
type Completion struct {
	OrderKey  string
	MessageID string
	At        time.Time
}

// CompletionHistory is a backend that knows whether a later event of a dead letter's record has
// completed, so support can be warned before a resubmit applies an older event over a newer one.
// The embedded queue marks its dead letters; Service Bus forgets a message once it is
// completed, so it cannot.
type CompletionHistory interface {
	// LaterCompletion reports the event of the same record as dead letter seq that completed
	// after seq was queued, if one did. ErrNotFound when nothing is parked under seq.
	LaterCompletion(ctx context.Context, seq int64) (Completion, bool, error)
}
