package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// Class is the retry classifier's verdict on a failure.
type Class int

const (
	// Transient failures may succeed later: network errors, timeouts, TLS certificate
	// verification failures, 401, 408, 409, 429, 5xx but 501.
	Transient Class = iota + 1
	// Permanent failures will fail the same way however often they are retried: other 4xx
	// (404 = the record is gone), 501, a refused redirect, invalid responses, invalid messages.
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
}

// ErrInvalidResponse reports a 2xx answer that does not hold what the route declared it needs
// (not JSON, or an expected field missing). Retrying will not change the answer.
var ErrInvalidResponse = errors.New("invalid response")

// permanentError marks an error that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// MarkPermanent marks err as one no retry can fix. Custom steps use it for their own rejects; any
// error a step returns unmarked is classified by what it wraps, and unknown errors are transient.
func MarkPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// StatusError is a non-2xx answer from a downstream HTTP API. *dataverse.Error has the same
// two methods, so the classifier reads both the same way without knowing either type.
type StatusError struct {
	Status     int
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// HTTPStatus reports the answer's status code.
func (e *StatusError) HTTPStatus() int { return e.Status }

// RetryAfterDelay reports the Retry-After the answer carried; zero if none.
func (e *StatusError) RetryAfterDelay() time.Duration { return e.RetryAfter }

// Classify is the one place that decides transient versus permanent, in the manner of
// go-retryablehttp's CheckRetry. Unknown errors count as transient: a needless retry costs a
// little time and is capped by MaxAttempts, while a wrong permanent verdict loses the event to
// the dead-letter queue at once.
func Classify(err error) Verdict {
	if err == nil {
		return Verdict{}
	}
	var (
		perm     *permanentError
		redirect *outbound.RedirectError
		status   interface{ HTTPStatus() int }
		after    interface{ RetryAfterDelay() time.Duration }
		verr     *event.ValidationError
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
	case errors.As(err, &redirect),
		errors.Is(err, ErrInvalidResponse),
		errors.As(err, &verr), errors.Is(err, event.ErrMalformed):
		// A redirect is the URL setting's answer on every try: the outbound client refuses to
		// follow it, so as not to carry credentials and writes to a host nobody configured.
		return Verdict{Class: Permanent}
	case errors.As(err, &status):
		v := Verdict{Class: ClassifyStatus(status.HTTPStatus())}
		if errors.As(err, &after) {
			v.RetryAfter = after.RetryAfterDelay()
		}
		return v
	}
	// Timeouts, refused connections, resets, DNS failures, a context deadline: all transient.
	return Verdict{Class: Transient}
}

// ClassifyStatus classifies a non-2xx HTTP status. A 401 says nothing about the event: the
// token was expired or revoked (the Dataverse client drops it, so the next try fetches a fresh
// one) or the identity is being set up; every event fails alike, so it backs off like an outage.
// A 409 is what an API following the Idempotency-Key draft answers while an earlier request
// with the same key is still in flight, which is exactly the case after a try timed out; the
// draft exempts it from "correct the request before retrying".
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

// RetryPolicy is the back-off policy, all in one place. A failing step is first retried quickly
// in-process (QuickAttempts tries, jittered exponential waits from QuickBase); if it still fails
// transiently the whole event is scheduled again (RetryLater) after
// min(LaterBase·2^(n-1), LaterMax) plus up to 20 % jitter for attempt n, or after the
// downstream's Retry-After when that is longer, up to LaterMax. Attempt MaxAttempts is the last one.
type RetryPolicy struct {
	QuickAttempts int           // tries per step within one delivery, including the first
	QuickBase     time.Duration // wait before the second try; doubles per try
	QuickMaxWait  time.Duration // a Retry-After longer than this ends the quick tries at once
	LaterBase     time.Duration // delay after attempt 1
	LaterMax      time.Duration // cap on the delay before jitter
	MaxAttempts   int           // delivery attempts before MaxAttemptsExceeded
}

// DefaultMaxAttempts makes the RetryLater schedule of DefaultRetryPolicy span at least six
// hours: 30s+1m+2m+4m+8m+16m+32m (≈1h03m) then 1h each, so the twelve delays between thirteen
// attempts add up to ≈6h03m before jitter (jitter only lengthens them). A Dataverse or ERP
// outage of a working morning therefore does not dead-letter anything.
const DefaultMaxAttempts = 13

// DefaultRetryPolicy is the policy used when Config.Retry is the zero value. Three quick tries
// with a 10 s step timeout and four steps stay within about two minutes, well inside a Service
// Bus lock with the host's auto-renewal.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		QuickAttempts: 3,
		QuickBase:     200 * time.Millisecond,
		QuickMaxWait:  2 * time.Second,
		LaterBase:     30 * time.Second,
		LaterMax:      time.Hour,
		MaxAttempts:   DefaultMaxAttempts,
	}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.QuickAttempts <= 0 {
		p.QuickAttempts = d.QuickAttempts
	}
	if p.QuickBase <= 0 {
		p.QuickBase = d.QuickBase
	}
	if p.QuickMaxWait <= 0 {
		p.QuickMaxWait = d.QuickMaxWait
	}
	if p.LaterBase <= 0 {
		p.LaterBase = d.LaterBase
	}
	if p.LaterMax <= 0 {
		p.LaterMax = d.LaterMax
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	return p
}

// QuickWait is how long to wait before quick try number try+1 (try counts from 1), given the
// downstream's Retry-After and a jitter sample in [0,1). ok is false when waiting in-process
// would take longer than QuickMaxWait: the event should be scheduled instead.
func (p RetryPolicy) QuickWait(try int, retryAfter time.Duration, jitter float64) (wait time.Duration, ok bool) {
	d := p.QuickBase << min(try-1, 20)
	// Equal jitter: between half and all of the exponential step, so concurrent workers spread out.
	wait = d/2 + time.Duration(float64(d/2)*jitter)
	wait = max(wait, retryAfter)
	return wait, wait <= p.QuickMaxWait
}

// LaterDelay is the delay before attempt n+1 after attempt n failed transiently. Jitter only
// lengthens the delay (by up to 20 %), so the schedule's total never falls below its design.
// A Retry-After is honoured up to LaterMax only: the header is the downstream's to choose, and
// one that names next week (or a date decades away) would otherwise park the event where no
// one looks, outliving the message's time to live.
func (p RetryPolicy) LaterDelay(n int, retryAfter time.Duration, jitter float64) time.Duration {
	d := p.LaterMax
	// Double only while that stays under LaterMax: shifting first would overflow a Duration
	// (30s·2^29 is negative) and a long attempts setting would retry at once.
	if shift := max(n-1, 0); shift < 63 && p.LaterBase <= p.LaterMax>>shift {
		d = p.LaterBase << shift
	}
	d += time.Duration(float64(d) * 0.2 * jitter)
	return max(d, min(retryAfter, p.LaterMax))
}

// wait sleeps for d or until ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
