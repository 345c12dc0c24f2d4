package webhook

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/platform/problem"
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
	KindOverloaded                           // too many requests in flight; worth a retry
	KindStageNotAccepted                     // an asynchronous step posted from a stage DVRELAY_ACCEPT_STAGES leaves out
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
	case KindOverloaded:
		return "overloaded"
	case KindStageNotAccepted:
		return "stage-not-accepted"
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

// ProblemTypeBase prefixes every problem type URI, as on every other dvrelay route.
const ProblemTypeBase = problem.TypeBase

// RetryAfterSeconds is sent with 503. Dataverse retries once on 503 whatever the header says;
// other callers get a hint short enough to fit inside Dataverse's own 60 s budget.
const RetryAfterSeconds = 5

// maxProblems bounds the errors array, so a pathological payload cannot blow up the answer.
const maxProblems = 50

// problemResponse is the one place that maps an intake error to HTTP. An error that is not an
// *Error is unexpected and becomes a bare 500 that says nothing about the cause.
func problemResponse(err error, correlationID string) Response {
	p := problem.Internal()
	h := http.Header{"Content-Type": {problem.ContentType}}

	var ie *Error
	if errors.As(err, &ie) {
		switch ie.Kind {
		case KindInvalid:
			p = problem.New(http.StatusBadRequest, ie.Kind.String(), "Invalid payload", ie.Detail)
			if errs := ie.Problems; len(errs) > 0 {
				if len(errs) > maxProblems {
					errs = errs[:maxProblems]
				}
				p.Errors = errs
			}
		case KindUnauthorized:
			// The same answer as the admin routes give; Detail holds the same text.
			p = httpauth.Refusal()
			p.Detail = ie.Detail
		case KindTooLarge:
			p = problem.New(http.StatusRequestEntityTooLarge, ie.Kind.String(), "Payload too large", ie.Detail)
		case KindUnsupportedMediaType:
			p = problem.New(http.StatusUnsupportedMediaType, ie.Kind.String(), "Unsupported media type", ie.Detail)
		case KindMethodNotAllowed:
			p = problem.New(http.StatusMethodNotAllowed, ie.Kind.String(), "Method not allowed", ie.Detail)
			h.Set("Allow", http.MethodPost)
		case KindStageNotAccepted:
			p = problem.New(http.StatusUnprocessableEntity, ie.Kind.String(), "Stage not accepted", ie.Detail)
		case KindUnavailable:
			// Never 500: Dataverse retries only 502, 503 and 504.
			p = problem.New(http.StatusServiceUnavailable, ie.Kind.String(), "Service unavailable", ie.Detail)
			h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		case KindOverloaded:
			// 503 too, for the same reason; the type tells a caller it was turned away unread.
			p = problem.New(http.StatusServiceUnavailable, ie.Kind.String(), "Service overloaded", ie.Detail)
			h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		}
	}
	p.CorrelationID = correlationID
	body, status := p.Marshal()
	return Response{Status: status, Header: h, Body: body}
}
