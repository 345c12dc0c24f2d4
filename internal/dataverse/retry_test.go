package dataverse_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
)

// recordingRetry is a Retry whose waits are recorded instead of slept, with the shortest jitter.
func recordingRetry(waits *[]time.Duration) dataverse.Retry {
	return dataverse.Retry{
		Sleep:  func(_ context.Context, d time.Duration) error { *waits = append(*waits, d); return nil },
		Jitter: func() float64 { return 0 },
	}
}

func TestRetry_waits_as_long_as_429_Retry_After_asks_then_succeeds(t *testing.T) {
	srv, c := newWebAPI(t)
	srv.Seed("accounts", map[string]any{"name": "a"})
	srv.Throttle(2, 3*time.Second)
	var waits []time.Duration

	var got []account
	err := recordingRetry(&waits).Do(context.Background(), true, func() error {
		return c.Get(context.Background(), "accounts", nil, &got)
	})

	if err != nil || len(got) != 1 {
		t.Fatalf("Do: %v, %d records", err, len(got))
	}
	if !slices.Equal(waits, []time.Duration{3 * time.Second, 3 * time.Second}) {
		t.Errorf("waits = %v, want two of 3s", waits)
	}
}

func TestRetry_repeats_a_gateway_error_only_for_an_idempotent_call(t *testing.T) {
	for _, idempotent := range []bool{true, false} {
		srv, c := newWebAPI(t)
		srv.Fail(1, http.StatusServiceUnavailable, "", "busy")
		var waits []time.Duration
		calls := 0
		err := recordingRetry(&waits).Do(context.Background(), idempotent, func() error {
			calls++
			_, err := c.Create(context.Background(), "accounts", map[string]any{"name": "a"})
			return err
		})
		if idempotent && (err != nil || calls != 2 || !slices.Equal(waits, []time.Duration{time.Second})) {
			t.Errorf("idempotent: err %v after %d calls, waits %v; want success on the second after 1s", err, calls, waits)
		}
		var dvErr *dataverse.Error
		if !idempotent && (!errors.As(err, &dvErr) || dvErr.Status != http.StatusServiceUnavailable || calls != 1) {
			t.Errorf("not idempotent: err %v after %d calls; want the 503 after one call", err, calls)
		}
	}
}

func TestRetry_gives_up_when_asked_to_wait_longer_than_MaxWait(t *testing.T) {
	srv, c := newWebAPI(t)
	srv.Throttle(1, time.Hour)
	var waits []time.Duration

	err := recordingRetry(&waits).Do(context.Background(), true, func() error {
		var out []account
		return c.Get(context.Background(), "accounts", nil, &out)
	})

	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusTooManyRequests || !strings.Contains(err.Error(), "run again later") || len(waits) != 0 {
		t.Errorf("err = %v after waits %v; want the 429 with advice to run again later, no wait", err, waits)
	}
}

// The worker and the operator commands share one classifier: what the worker tries again (a
// 500, a 401 once the bearer policy dropped the token) an operator command tries again too.
func TestRetry_tries_again_what_the_worker_tries_again(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusUnauthorized, http.StatusConflict} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv, c := newWebAPI(t)
			srv.Seed("accounts", map[string]any{"name": "a"})
			srv.Fail(1, status, "", "once")
			var waits []time.Duration
			var got []account
			err := recordingRetry(&waits).Do(context.Background(), true, func() error {
				return c.Get(context.Background(), "accounts", nil, &got)
			})
			if err != nil || len(got) != 1 || !slices.Equal(waits, []time.Duration{time.Second}) {
				t.Errorf("err %v, %d records, waits %v; want success after one wait of 1s", err, len(got), waits)
			}
		})
	}
}

func TestRetry_sends_a_create_again_only_when_the_answer_proves_it_was_not_carried_out(t *testing.T) {
	for _, tt := range []struct {
		status int
		calls  int
	}{
		{http.StatusUnauthorized, 2},
		{http.StatusTooManyRequests, 2},
		{http.StatusInternalServerError, 1},
		{http.StatusGatewayTimeout, 1},
	} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			srv, c := newWebAPI(t)
			srv.Fail(1, tt.status, "", "once")
			var waits []time.Duration
			calls := 0
			_ = recordingRetry(&waits).Do(context.Background(), false, func() error {
				calls++
				_, err := c.Create(context.Background(), "accounts", map[string]any{"name": "a"})
				return err
			})
			if calls != tt.calls {
				t.Errorf("calls = %d, want %d", calls, tt.calls)
			}
		})
	}
}

func TestRetry_gives_up_on_a_permanent_answer_at_once(t *testing.T) {
	srv, c := newWebAPI(t)
	srv.Fail(1, http.StatusPreconditionFailed, "0x80060882", "ConcurrencyVersionMismatch")
	var waits []time.Duration
	calls := 0
	err := recordingRetry(&waits).Do(context.Background(), true, func() error {
		calls++
		return c.UpdateRecord(context.Background(), "accounts", recordID, map[string]any{"name": "a"})
	})
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusPreconditionFailed || calls != 1 || len(waits) != 0 {
		t.Errorf("err %v after %d calls and waits %v; want the 412 after one call", err, calls, waits)
	}
}
