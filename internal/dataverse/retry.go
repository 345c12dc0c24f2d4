package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Retry waits out what the Web API asks a caller to wait out, for operator commands that run
// until they are done (handler register, handler recover). The worker does not use it: it
// schedules a retry on the queue rather than hold a delivery. The zero value is ready to use.
type Retry struct {
	// MaxAttempts bounds tries per call; 0 means 5.
	MaxAttempts int
	// MaxWait is the longest Retry-After honoured; a longer one ends the call. 0 means 5 minutes.
	MaxWait time.Duration
	// Sleep waits between tries; nil means a timer. Tests pass one that records the wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnWait, when set, hears about each wait before it starts (to tell the person why).
	OnWait func(d time.Duration, cause error)
}

// Do runs call, and again when the Web API says to: after a 429 (service protection limits)
// for any request, since a throttled request was not carried out; after a 502, 503 or 504 only
// when idempotent, since a create that timed out at a gateway may have happened. It waits as
// long as Retry-After asks, else 1 s, 2 s, 4 s…
func (r Retry) Do(ctx context.Context, idempotent bool, call func() error) error {
	maxAttempts, maxWait := r.MaxAttempts, r.MaxWait
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Minute
	}
	sleep := r.Sleep
	if sleep == nil {
		sleep = sleepTimer
	}
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		wait, retry := retryDelay(err, attempt, idempotent)
		if !retry || attempt >= maxAttempts {
			return err
		}
		if wait > maxWait {
			return fmt.Errorf("the Web API asked to wait %s before the next request, longer than %s; run again later: %w", wait, maxWait, err)
		}
		if r.OnWait != nil {
			r.OnWait(wait, err)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting %s as the Web API asked: %w", wait, err)
		}
	}
}

// retryDelay classifies err: how long to wait before the next try, or false for no retry.
func retryDelay(err error, attempt int, idempotent bool) (time.Duration, bool) {
	var e *Error
	if !errors.As(err, &e) {
		return 0, false
	}
	switch e.Status {
	case http.StatusTooManyRequests:
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if !idempotent {
			return 0, false
		}
	default:
		return 0, false
	}
	if e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return time.Duration(1<<(attempt-1)) * time.Second, true
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
