package worker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

func TestClassify_separates_transient_from_permanent(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		want  worker.Class
		after time.Duration
	}{
		{"connection refused", &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, worker.Transient, 0},
		{"try timed out", fmt.Errorf("POST: %w", context.DeadlineExceeded), worker.Transient, 0},
		{"408", &worker.StatusError{Status: 408}, worker.Transient, 0},
		{"409 same Idempotency-Key in flight", &worker.StatusError{Status: 409}, worker.Transient, 0},
		{"401 expired token", fmt.Errorf("update: %w", &dataverse.Error{Status: 401, Code: "0x80072560"}), worker.Transient, 0},
		{"429 with Retry-After", fmt.Errorf("step: %w", &worker.StatusError{Status: 429, RetryAfter: 7 * time.Second}), worker.Transient, 7 * time.Second},
		{"500", &worker.StatusError{Status: 500}, worker.Transient, 0},
		{"503 from Dataverse", fmt.Errorf("update: %w", &dataverse.Error{Status: 503, RetryAfter: time.Second}), worker.Transient, time.Second},
		{"501", &worker.StatusError{Status: 501}, worker.Permanent, 0},
		{"400", &worker.StatusError{Status: 400}, worker.Permanent, 0},
		{"404 record gone", fmt.Errorf("update: %w", &dataverse.Error{Status: 404, Code: "0x80040217"}), worker.Permanent, 0},
		{"403 privilege", &dataverse.Error{Status: 403}, worker.Permanent, 0},
		{"412 If-Match or duplicate from Dataverse", &dataverse.Error{Status: 412, Code: "0x80060882"}, worker.Permanent, 0},
		{"Dataverse input no request can be built from", fmt.Errorf("update: %w", dataverse.ErrInvalidInput), worker.Permanent, 0},
		{"Dataverse answer that is not what the Web API documents", fmt.Errorf("read: %w", dataverse.ErrInvalidResponse), worker.Permanent, 0},
		{"invalid response", fmt.Errorf("POST: %w", worker.ErrInvalidResponse), worker.Permanent, 0},
		{"marked permanent by a custom step", worker.MarkPermanent(errors.New("rejected")), worker.Permanent, 0},
		// A certificate is fixed by an operator; meanwhile every event fails alike and none may be dead-lettered.
		{"untrusted certificate", &url.Error{Op: "Post", URL: "https://x", Err: x509.UnknownAuthorityError{}}, worker.Transient, 0},
		{"certificate verification failed", fmt.Errorf("POST: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), worker.Transient, 0},
		{"expired certificate", &url.Error{Op: "Post", URL: "https://x", Err: x509.CertificateInvalidError{Reason: x509.Expired}}, worker.Transient, 0},
		{"certificate for another host", &url.Error{Op: "Post", URL: "https://x", Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}}, worker.Transient, 0},
		{"certificate error marked permanent by a custom step", worker.MarkPermanent(x509.UnknownAuthorityError{}), worker.Permanent, 0},
		{"redirect refused", &url.Error{Op: "Post", URL: "https://x", Err: &outbound.RedirectError{Status: 307, Location: "http://elsewhere"}}, worker.Permanent, 0},
		{"redirect refused by Dataverse", fmt.Errorf("dataverse update opportunity(x): %w", &outbound.RedirectError{Status: 308, Location: "http://elsewhere"}), worker.Permanent, 0},
		{"identity endpoint refused the token", fmt.Errorf("token: %w", &dataverse.TokenError{Status: 400, Code: "invalid_request"}), worker.Transient, 0},
		{"unknown error", errors.New("something odd"), worker.Transient, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := worker.Classify(tt.err)
			if v.Class != tt.want || v.RetryAfter != tt.after {
				t.Errorf("Classify(%v) = %v/%v, want %v/%v", tt.err, v.Class, v.RetryAfter, tt.want, tt.after)
			}
		})
	}
}

func TestDefaultMaxAttempts_spans_at_least_six_hours_and_no_more_attempts_than_needed(t *testing.T) {
	p := worker.DefaultRetryPolicy()
	if p.MaxAttempts != worker.DefaultMaxAttempts {
		t.Fatalf("DefaultRetryPolicy().MaxAttempts = %d, want DefaultMaxAttempts", p.MaxAttempts)
	}
	// Attempt n is followed by LaterDelay(n) for n = 1 … MaxAttempts-1; jitter 0 is the shortest.
	span := func(attempts int) time.Duration {
		var total time.Duration
		for n := 1; n < attempts; n++ {
			total += p.LaterDelay(n, 0, 0)
		}
		return total
	}
	if got := span(worker.DefaultMaxAttempts); got < 6*time.Hour {
		t.Errorf("schedule of %d attempts spans %s, want at least 6h", worker.DefaultMaxAttempts, got)
	}
	if got := span(worker.DefaultMaxAttempts - 1); got >= 6*time.Hour {
		t.Errorf("%d attempts already span %s: DefaultMaxAttempts is larger than it needs to be", worker.DefaultMaxAttempts-1, got)
	}
}

func TestRetryPolicy_LaterDelay_doubles_caps_jitters_upward_and_honours_Retry_After_up_to_LaterMax(t *testing.T) {
	p := worker.DefaultRetryPolicy()
	tests := []struct {
		n          int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{1, 0, 0, 30 * time.Second},
		{2, 0, 0, time.Minute},
		{7, 0, 0, 32 * time.Minute},
		{8, 0, 0, time.Hour},
		{40, 0, 0, time.Hour},
		// 30s·2^29 overflows a Duration: a long DVRELAY_MAX_ATTEMPTS must not retry at once.
		{30, 0, 0, time.Hour},
		{1, 0, 0.5, 33 * time.Second},
		{8, 0, 0.5, time.Hour + 6*time.Minute},
		{1, 5 * time.Minute, 0, 5 * time.Minute},
		{3, time.Second, 0, 2 * time.Minute},
		{1, 7 * 24 * time.Hour, 0, time.Hour},
		{8, 3 * time.Hour, 0.5, time.Hour + 6*time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d after=%s jitter=%v", tt.n, tt.retryAfter, tt.jitter), func(t *testing.T) {
			if got := p.LaterDelay(tt.n, tt.retryAfter, tt.jitter); got != tt.want {
				t.Errorf("LaterDelay = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRetryPolicy_LaterDelay_never_shrinks_as_attempts_grow(t *testing.T) {
	for _, base := range []time.Duration{time.Second, 30 * time.Second, 5 * time.Minute, time.Hour} {
		p := worker.RetryPolicy{LaterBase: base, LaterMax: 6 * time.Hour, MaxAttempts: 100}
		prev := time.Duration(0)
		for n := 1; n <= 100; n++ {
			d := p.LaterDelay(n, 0, 0)
			if d < prev || d <= 0 {
				t.Fatalf("base %s: LaterDelay(%d) = %s after %s, want a non-decreasing positive delay", base, n, d, prev)
			}
			prev = d
		}
	}
}

func TestRetryPolicy_QuickWait_gives_up_on_a_long_Retry_After(t *testing.T) {
	p := worker.DefaultRetryPolicy()
	if d, ok := p.QuickWait(1, 0, 0); !ok || d != 100*time.Millisecond {
		t.Errorf("QuickWait(1) = %s, %v; want 100ms, true", d, ok)
	}
	if d, ok := p.QuickWait(2, 0, 1); !ok || d != 400*time.Millisecond {
		t.Errorf("QuickWait(2, jitter 1) = %s, %v; want 400ms, true", d, ok)
	}
	if d, ok := p.QuickWait(1, time.Second, 0); !ok || d != time.Second {
		t.Errorf("QuickWait with Retry-After 1s = %s, %v; want 1s, true", d, ok)
	}
	if _, ok := p.QuickWait(1, 30*time.Second, 0); ok {
		t.Error("QuickWait with Retry-After 30s is ok, want the step handed to the schedule")
	}
}
