package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/retry"
)

// The classifier and the back-off are the shared outbound-call policy (internal/platform/retry),
// so the worker's steps and the operator commands read a failure the same way. The names stay
// here for the routes' custom steps and the metrics.
type (
	// Class is the retry classifier's verdict on a failure.
	Class = retry.Class
	// Verdict is what the classifier decided about one failure.
	Verdict = retry.Verdict
	// RetryPolicy is the back-off policy: quick in-process tries, then RetryLater.
	RetryPolicy = retry.Policy
)

const (
	Transient = retry.Transient
	Permanent = retry.Permanent
)

// ErrInvalidResponse reports a 2xx answer that does not hold what the route declared it needs
// (not JSON, or an expected field missing). Retrying will not change the answer.
var ErrInvalidResponse = retry.NewPermanent("invalid response")

// MarkPermanent marks err as one no retry can fix. Custom steps use it for their own rejects; any
// error a step returns unmarked is classified by what it wraps, and unknown errors are transient.
func MarkPermanent(err error) error { return retry.MarkPermanent(err) }

// Classify decides transient versus permanent: retry.Classify, the one classifier.
func Classify(err error) Verdict { return retry.Classify(err) }

// ClassifyStatus classifies a non-2xx HTTP status: retry.ClassifyStatus.
func ClassifyStatus(status int) Class { return retry.ClassifyStatus(status) }

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

// DefaultMaxAttempts makes the RetryLater schedule of DefaultRetryPolicy span at least six
// hours: 30s+1m+2m+4m+8m+16m+32m (≈1h03m) then 1h each, so the twelve delays between thirteen
// attempts add up to ≈6h03m before jitter (jitter only lengthens them). A Dataverse or ERP
// outage of a working morning therefore does not dead-letter anything.
const DefaultMaxAttempts = 13

// DefaultRetryPolicy is the policy used when Config.Retry is the zero value. A short
// Retry-After (a 429 or 503 asking for up to 5 s) is waited out in process, as Dataverse's
// guidance asks, rather than costing the event the 30 s and more of the schedule; a longer one
// goes to the schedule at once. Three tries with a 10 s step timeout and two such waits keep a
// step within 40 s, and DefaultProcessTimeout bounds the whole delivery, well inside a Service
// Bus lock with the host's auto-renewal.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		QuickAttempts: 3,
		QuickBase:     200 * time.Millisecond,
		QuickMaxWait:  5 * time.Second,
		LaterBase:     30 * time.Second,
		LaterMax:      time.Hour,
		MaxAttempts:   DefaultMaxAttempts,
	}
}

func withDefaults(p RetryPolicy) RetryPolicy { return p.WithDefaults(DefaultRetryPolicy()) }

// wait sleeps for d or until ctx is done.
func wait(ctx context.Context, d time.Duration) error { return retry.Wait(ctx, d) }
