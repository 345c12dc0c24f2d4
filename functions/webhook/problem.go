package webhook

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/dvrelay/dvrelay/internal/event"
)

// Kind is what went wrong, as far as the caller needs to know.
type Kind int

const (
	KindInvalid              Kind = iota + 1 // the payload is malformed or fails validation
	KindUnauthorized                         // the webhook secret is missing or wrong
	KindTooLarge                             // the body exceeds MaxBodyBytes
	KindUnsupportedMediaType                 // the body is not declared as JSON
	KindMethodNotAllowed                     // not a POST
	KindUnavailable                          // the event could not be queued; worth a retry
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid-payload"
	case KindUnauthorized:
		return "unauthorized"
	case KindTooLarge:
		return "payload-too-large"
	case KindUnsupportedMediaType:
		return "unsupported-media-type"
	case KindMethodNotAllowed:
		return "method-not-allowed"
	case KindUnavailable:
		return "unavailable"
	}
	return "unknown"
}

// Error is an intake failure the caller is told about. Detail is shown to the caller, so it
// never holds a secret or a payload value; Err is the cause, for logs only.
type Error struct {
	Kind     Kind
	Detail   string
	Problems []event.FieldProblem // KindInvalid from schema validation
	Err      error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Kind.String() + ": " + e.Detail + ": " + e.Err.Error()
	}
	return e.Kind.String() + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

// ProblemTypeBase prefixes every problem type URI. The URIs are stable identifiers for
// clients to switch on; they need not resolve.
const ProblemTypeBase = "https://dvrelay.dev/problems/"

// RetryAfterSeconds is sent with 503. Dataverse retries once on 503 whatever the header says;
// other callers get a hint short enough to fit inside Dataverse's own 60 s budget.
const RetryAfterSeconds = 5

// maxProblems bounds the errors array, so a pathological payload cannot blow up the answer.
const maxProblems = 50

// problem is an RFC 9457 problem details document.
type problem struct {
	Type          string               `json:"type"`
	Title         string               `json:"title"`
	Status        int                  `json:"status"`
	Detail        string               `json:"detail,omitempty"`
	CorrelationID string               `json:"correlationId,omitempty"`
	Errors        []event.FieldProblem `json:"errors,omitempty"`
}

// problemResponse is the one place that maps an intake error to HTTP. An error that is not an
// *Error is unexpected and becomes a bare 500 that says nothing about the cause.
func problemResponse(err error, correlationID string) Response {
	p := problem{
		Type:          "about:blank",
		Title:         http.StatusText(http.StatusInternalServerError),
		Status:        http.StatusInternalServerError,
		CorrelationID: correlationID,
	}
	h := http.Header{"Content-Type": {"application/problem+json"}}

	var ie *Error
	if errors.As(err, &ie) {
		p.Type = ProblemTypeBase + ie.Kind.String()
		p.Detail = ie.Detail
		switch ie.Kind {
		case KindInvalid:
			p.Status, p.Title = http.StatusBadRequest, "Invalid payload"
			p.Errors = ie.Problems
			if len(p.Errors) > maxProblems {
				p.Errors = p.Errors[:maxProblems]
			}
		case KindUnauthorized:
			p.Status, p.Title = http.StatusUnauthorized, "Unauthorized"
		case KindTooLarge:
			p.Status, p.Title = http.StatusRequestEntityTooLarge, "Payload too large"
		case KindUnsupportedMediaType:
			p.Status, p.Title = http.StatusUnsupportedMediaType, "Unsupported media type"
		case KindMethodNotAllowed:
			p.Status, p.Title = http.StatusMethodNotAllowed, "Method not allowed"
			h.Set("Allow", http.MethodPost)
		case KindUnavailable:
			// Never 500: Dataverse retries only 502, 503 and 504.
			p.Status, p.Title = http.StatusServiceUnavailable, "Service unavailable"
			h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		default:
			p = problem{Type: "about:blank", Title: p.Title, Status: p.Status, CorrelationID: correlationID}
		}
	}

	body, mErr := json.Marshal(p)
	if mErr != nil {
		// Only plain strings and ints go in; this cannot fail, but if it did the status stands.
		body = []byte(`{"type":"about:blank","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	return Response{Status: p.Status, Header: h, Body: body}
}
