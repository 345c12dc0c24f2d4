// Package retry is the one outbound-call retry policy: which failures are worth another try
// (Classify), how long to wait before it (Policy), and how a Retry-After header reads. The
// worker's steps and the operator commands (register, recover) both use it, so a status means
// the same thing to each of them.
package retry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// Class is the classifier's verdict on a failure.
type Class int

const (
	// Transient failures may succeed later: network errors, timeouts, TLS certificate
	// verification failures, 401, 408, 409, 429, 5xx but 501.
	Transient Class = iota + 1
	// Permanent failures will fail the same way however often they are retried: other 4xx
	// (404 = the record is gone, 412 = an If-Match or duplicate precondition), 501, a refused
	// redirect, errors marked permanent.
	Permanent
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return "none"
}

// Verdict is what the classifier decided about one failure.
type Verdict struct {
	Class Class
	// RetryAfter is the wait the downstream asked for (Retry-After), zero if it did not say.
	RetryAfter time.Duration
	// NotCarriedOut reports an answer that proves the server refused the request before acting
	// on it (401, 408, 429), so that even a request that is not safe to repeat (a create) may
	// be sent again.
	NotCarriedOut bool
}

// permanentError marks an error that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// MarkPermanent marks err as one no retry can fix; Classify then says Permanent whatever err
// wraps.
func MarkPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// NewPermanent returns a sentinel error (for errors.Is) that Classify reports as Permanent:
// an input no request can be built from, an answer that does not hold what was asked for.
func NewPermanent(text string) error {
	return &permanentError{err: errors.New(text)}
}

// Classify is the one place that decides transient versus permanent, in the manner of
// go-retryablehttp's CheckRetry. It reads a status from any error in the chain with an
// HTTPStatus() int method (*dataverse.Error, the http steps' status error) and the wait from one
// with RetryAfterDelay() time.Duration. Unknown errors count as transient: a needless retry
// costs a little time and is capped by the caller's attempts, while a wrong permanent verdict
// loses an event to the dead-letter queue at once.
func Classify(err error) Verdict {
	if err == nil {
		return Verdict{}
	}
	var (
		perm     *permanentError
		redirect *outbound.RedirectError
		status   interface{ HTTPStatus() int }
		after    interface{ RetryAfterDelay() time.Duration }
		verify   *tls.CertificateVerificationError
		unkCA    x509.UnknownAuthorityError
		badCrt   x509.CertificateInvalidError
		host     x509.HostnameError
	)
	switch {
	case errors.As(err, &perm):
		return Verdict{Class: Permanent}
	case errors.As(err, &verify), errors.As(err, &unkCA), errors.As(err, &badCrt), errors.As(err, &host):
		// An untrusted, expired or misnamed certificate is configuration an operator fixes
		// (renews, replaces, trusts). Until then every event fails alike; dead-lettering them
		// would empty the queue in minutes, while the back-off outlasts a working day.
		return Verdict{Class: Transient}
	case errors.As(err, &redirect):
		// A redirect is the URL setting's answer on every try: the outbound client refuses to
		// follow it, so as not to carry credentials and writes to a host nobody configured.
		return Verdict{Class: Permanent}
	case errors.As(err, &status):
		code := status.HTTPStatus()
		v := Verdict{Class: ClassifyStatus(code)}
		switch code {
		case http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusTooManyRequests:
			v.NotCarriedOut = true
		}
		if errors.As(err, &after) {
			v.RetryAfter = after.RetryAfterDelay()
		}
		return v
	}
	// Timeouts, refused connections, resets, DNS failures, a context deadline, an identity
	// endpoint that refused a token (the deployment's identity setup): all transient.
	return Verdict{Class: Transient}
}

// ClassifyStatus classifies a non-2xx HTTP status, following what Dataverse documents:
//
//   - 429 is service protection: the request was not run; wait as Retry-After says.
//   - 5xx but 501 are outages (503 with Retry-After, gateway errors, a 500 for a SQL timeout).
//   - 401 says nothing about the event: the token expired or was revoked (the bearer policy
//     drops it, so the next try signs in again) or the identity is being set up; every call
//     fails alike, so it backs off like an outage.
//   - 408 is a request the server gave up waiting for.
//   - 409 is what an API following the Idempotency-Key draft answers while an earlier request
//     with the same key is still in flight, exactly the case after a try timed out; the draft
//     exempts it from "correct the request before retrying". Dataverse reports its own
//     conflicts (a concurrency mismatch, a duplicate) as 412, which is permanent: the same
//     If-Match or the same duplicate fails the same way on every try.
//   - every other 4xx (400, 403, 404, 412, 413) and 501 are the request's own fault.
func ClassifyStatus(status int) Class {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusRequestTimeout,
		status == http.StatusConflict, status == http.StatusTooManyRequests:
		return Transient
	case status == http.StatusNotImplemented:
		return Permanent
	case status >= 500, status == 0:
		return Transient
	}
	return Permanent
}
