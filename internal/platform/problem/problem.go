// Package problem is the one error body dvrelay's HTTP routes answer with: an RFC 9457 problem
// details document. The intake and the admin routes both build theirs here, so a client sees
// one shape whichever route refused it.
package problem

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of every problem answer.
const ContentType = "application/problem+json"

// TypeBase prefixes every problem type URI. The URIs are stable identifiers for clients to
// switch on; they need not resolve.
const TypeBase = "https://dvrelay.dev/problems/"

// Details is one problem document. Detail is shown to the caller, so it never holds a secret or
// a payload value.
type Details struct {
	Type          string `json:"type"`
	Title         string `json:"title"`
	Status        int    `json:"status"`
	Detail        string `json:"detail,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	// Errors lists what failed field by field (the intake's schema problems); nil leaves it out.
	Errors any `json:"errors,omitempty"`
}

// New is a problem of a kind: its type is TypeBase+kind.
func New(status int, kind, title, detail string) Details {
	return Details{Type: TypeBase + kind, Title: title, Status: status, Detail: detail}
}

// Internal is the answer to anything unexpected: a bare 500 that says nothing about the cause.
func Internal() Details {
	return Details{
		Type:   "about:blank",
		Title:  http.StatusText(http.StatusInternalServerError),
		Status: http.StatusInternalServerError,
	}
}

// Marshal encodes p and returns the status to answer with it.
func (p Details) Marshal() (body []byte, status int) {
	body, err := json.Marshal(p)
	if err != nil {
		// Only strings, ints and plain field lists go in, so this cannot fail; if it did, the
		// answer is still a problem, and a 500.
		return []byte(`{"type":"about:blank","status":500}`), http.StatusInternalServerError
	}
	return body, p.Status
}

// Write answers p on w.
func Write(w http.ResponseWriter, p Details) {
	body, status := p.Marshal()
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
