package registration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// retrying is a WebAPI that tries a request again when the Web API says to: 429 (service
// protection limits) for any request, since a throttled request was not carried out; 502,
// 503 and 504 only for requests that are safe to repeat, since a create that timed out at a
// gateway may have happened (a rerun finds it by its name instead).
type retrying struct {
	api         WebAPI
	maxAttempts int
	maxWait     time.Duration
	sleep       func(ctx context.Context, d time.Duration) error
	onWait      func(d time.Duration, cause error)
}

func newRetrying(api WebAPI, opts Options) *retrying {
	r := &retrying{api: api, maxAttempts: opts.MaxAttempts, maxWait: opts.MaxWait, sleep: opts.Sleep, onWait: opts.OnWait}
	if r.maxAttempts <= 0 {
		r.maxAttempts = 5
	}
	if r.maxWait <= 0 {
		r.maxWait = 5 * time.Minute
	}
	if r.sleep == nil {
		r.sleep = sleep
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusError is what the Web API client's errors tell about the answer (*dataverse.Error).
type statusError interface {
	HTTPStatus() int
	RetryAfterDelay() time.Duration
}

// retryDelay classifies err: how long to wait before the next try, or false for no retry.
func (r *retrying) retryDelay(err error, attempt int, idempotent bool) (time.Duration, bool) {
	var se statusError
	if !errors.As(err, &se) {
		return 0, false
	}
	switch se.HTTPStatus() {
	case http.StatusTooManyRequests:
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if !idempotent {
			return 0, false
		}
	default:
		return 0, false
	}
	if d := se.RetryAfterDelay(); d > 0 {
		return d, true
	}
	return time.Duration(1<<(attempt-1)) * time.Second, true
}

func (r *retrying) do(ctx context.Context, idempotent bool, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		wait, retry := r.retryDelay(err, attempt, idempotent)
		if !retry || attempt >= r.maxAttempts {
			return err
		}
		if wait > r.maxWait {
			return fmt.Errorf("the Web API asked to wait %s before the next request, longer than %s; run again later: %w", wait, r.maxWait, err)
		}
		if r.onWait != nil {
			r.onWait(wait, err)
		}
		if err := r.sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting %s as the Web API asked: %w", wait, err)
		}
	}
}

func (r *retrying) Get(ctx context.Context, path string, query url.Values, out any) error {
	return r.do(ctx, true, func() error { return r.api.Get(ctx, path, query, out) })
}

func (r *retrying) GetRecord(ctx context.Context, entitySet, id string, query url.Values, out any) error {
	return r.do(ctx, true, func() error { return r.api.GetRecord(ctx, entitySet, id, query, out) })
}

func (r *retrying) Create(ctx context.Context, entitySet string, body any) (string, error) {
	var id string
	err := r.do(ctx, false, func() error {
		var err error
		id, err = r.api.Create(ctx, entitySet, body)
		return err
	})
	return id, err
}

func (r *retrying) UpdateRecord(ctx context.Context, entitySet, id string, body any) error {
	return r.do(ctx, true, func() error { return r.api.UpdateRecord(ctx, entitySet, id, body) })
}

func (r *retrying) Delete(ctx context.Context, entitySet, id string) error {
	return r.do(ctx, true, func() error { return r.api.Delete(ctx, entitySet, id) })
}
