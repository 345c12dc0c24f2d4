package worker

import (
	"context"
	"log/slog"
)

// logStep writes one JSON line naming the event: ids and names, never a column value.
type logStep struct{}

func newLogStep(StepDecl, BuildEnv) (Step, error) { return logStep{}, nil }

func (logStep) Run(ctx context.Context, r *Run) error {
	ev := r.Event
	r.Log.LogAttrs(ctx, slog.LevelInfo, "event",
		slog.String("entity", ev.Entity),
		slog.String("message", ev.Message),
		slog.String("eventName", ev.EventName),
		slog.String("recordId", ev.RecordId),
		slog.Any("changedFields", ev.ChangedFields),
		slog.String("triggeredBy", ev.TriggeredBy),
		slog.String("source", ev.Source),
		slog.Int("attempt", r.Attempt),
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
