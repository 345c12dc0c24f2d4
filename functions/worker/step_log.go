package worker

import (
	"context"
	"log/slog"
)

// logStep writes one JSON line naming the event: ids and names, never a column value. r.Log
// already carries correlationId, eventId, entity, message and attempt, so only what it lacks is
// added here (a JSON line must not repeat a key).
type logStep struct{}

func newLogStep(StepDecl, BuildEnv) (Step, error) { return logStep{}, nil }

func (logStep) Run(ctx context.Context, r *Run) error {
	ev := r.Event
	r.Log.LogAttrs(ctx, slog.LevelInfo, "event",
		slog.String("eventName", ev.EventName),
		slog.String("recordId", ev.RecordID),
		slog.Any("changedFields", ev.ChangedFields),
		slog.String("triggeredBy", ev.TriggeredBy),
		slog.String("source", ev.Source),
	)
	return nil
}

// builtinStepTypes are the step types every worker knows.
func builtinStepTypes() map[string]StepType {
	return map[string]StepType{
		"http":             newHTTPStep,
		"dataverse-update": newUpdateStep,
		"log":              newLogStep,
	}
}
