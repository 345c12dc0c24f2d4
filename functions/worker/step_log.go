package worker

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
)

// logStep writes one JSON line naming the event: ids and names, never a column value. r.Log
// already carries correlationId, eventId, entity, message and attempt, so only what it lacks is
// added here (a JSON line must not repeat a key).
type logStep struct{}

func newLogStep(StepDecl, BuildEnv) (Step, error) { return logStep{}, nil }

func (logStep) Run(ctx context.Context, r *Run) error {
	ev := r.Event
	attrs := []slog.Attr{
		slog.String("eventName", ev.EventName),
		slog.String("recordId", ev.RecordID),
		slog.Any("changedFields", ev.ChangedFields),
	}
	// A webhook event names the user by systemuser id; a plugin may put a user name there,
	// which is personal data and stays out of the log.
	if isGUID(ev.TriggeredBy) {
		attrs = append(attrs, slog.String("triggeredBy", ev.TriggeredBy))
	}
	attrs = append(attrs, slog.String("source", ev.Source))
	r.Log.LogAttrs(ctx, slog.LevelInfo, "event", attrs...)
	return nil
}

// isGUID reports whether s is a GUID in its hyphenated 36-character form, the only form ids take
// in canonical events (uuid.Validate alone also accepts braces, urn: prefixes and bare hex).
func isGUID(s string) bool {
	return len(s) == 36 && uuid.Validate(s) == nil
}

// builtinStepTypes are the step types every worker knows.
func builtinStepTypes() map[string]StepType {
	return map[string]StepType{
		"http":             newHTTPStep,
		"dataverse-update": newUpdateStep,
		"dataverse-read":   newReadStep,
		"log":              newLogStep,
	}
}
