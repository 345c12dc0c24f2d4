package webhook

import (
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/google/uuid"
)

// validCorrelationID is the one rule for ids taken from the outside (event.ValidCorrelationID).
func validCorrelationID(v string) string { return event.ValidCorrelationID(v) }

func newCorrelationID() string { return uuid.NewString() }
