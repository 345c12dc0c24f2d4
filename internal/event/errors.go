package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Hints are facts about a payload that live outside its body (HTTP headers, the clock).
type Hints struct {
	// SizeExceeded is true when Dataverse sent x-ms-dynamics-msg-size-exceeded: the images,
	// InputParameters and ParentContext were dropped from the body.
	SizeExceeded bool
	// ReceivedAt stamps events whose payload carries no usable time.
	ReceivedAt time.Time
}

// ErrMalformed reports a body that is not a JSON object at all.
var ErrMalformed = errors.New("event: body is not a JSON object")

// FieldProblem is one failing field, addressed by a JSON pointer into the posted body
// ("" for the document itself).
type FieldProblem struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// ValidationError lists every field of a payload that failed its schema or format checks,
// sorted by pointer. A body failing in more than 100 places lists the first 100 found, then an
// entry for the whole document (pointer "") saying that checking stopped there.
type ValidationError struct {
	Kind     string // which shape it was checked as: "RemoteExecutionContext", "PluginEvent", "CanonicalEvent"
	Problems []FieldProblem
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		parts = append(parts, fmt.Sprintf("%s: %s", p.Pointer, p.Detail))
	}
	return fmt.Sprintf("event: invalid %s: %s", e.Kind, strings.Join(parts, "; "))
}
