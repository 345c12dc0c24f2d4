package retry_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/retry"
)

type statusErr struct {
	status int
	after  time.Duration
}

func (e *statusErr) Error() string                  { return http.StatusText(e.status) }
func (e *statusErr) HTTPStatus() int                { return e.status }
func (e *statusErr) RetryAfterDelay() time.Duration { return e.after }

func TestClassify_says_which_refusals_were_not_carried_out_so_even_a_create_may_be_sent_again(t *testing.T) {
	tests := []struct {
		status        int
		class         retry.Class
		notCarriedOut bool
	}{
		{401, retry.Transient, true},
		{408, retry.Transient, true},
		{429, retry.Transient, true},
		{409, retry.Transient, false},
		{500, retry.Transient, false},
		{503, retry.Transient, false},
		{504, retry.Transient, false},
		{412, retry.Permanent, false},
		{501, retry.Permanent, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			v := retry.Classify(fmt.Errorf("call: %w", &statusErr{status: tt.status, after: time.Second}))
			if v.Class != tt.class || v.NotCarriedOut != tt.notCarriedOut || v.RetryAfter != time.Second {
				t.Errorf("Classify(%d) = %+v, want %v, not carried out %v, Retry-After 1s", tt.status, v, tt.class, tt.notCarriedOut)
			}
		})
	}
}

func TestNewPermanent_is_a_sentinel_the_classifier_reports_permanent(t *testing.T) {
	errBad := retry.NewPermanent("bad answer")
	err := fmt.Errorf("read: %w: more detail", errBad)
	if !errors.Is(err, errBad) {
		t.Fatal("errors.Is does not find the sentinel")
	}
	if v := retry.Classify(err); v.Class != retry.Permanent {
		t.Errorf("Classify = %v, want permanent", v.Class)
	}
	if err.Error() != "read: bad answer: more detail" {
		t.Errorf("text = %q", err)
	}
}

func TestParseRetryAfter_reads_seconds_and_http_dates(t *testing.T) {
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"120", 120 * time.Second},
		{" 5 ", 5 * time.Second},
		{"Wed, 25 Nov 2026 06:01:30 GMT", 90 * time.Second},
		{"Wed, 25 Nov 2026 05:59:00 GMT", 0},
		{"soon", 0},
		{"999999999999", 7 * 24 * time.Hour},
		{"Fri, 31 Dec 2100 23:59:59 GMT", 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := retry.ParseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
