package retry

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is the one back-off. A failing call is first tried again in process (QuickAttempts
// tries, jittered exponential waits from QuickBase, or the downstream's Retry-After when that is
// longer, as long as the wait fits in QuickMaxWait). The worker then schedules the whole event
// again after min(LaterBase·2^(n-1), LaterMax) plus up to 20 % jitter for attempt n, or after the
// downstream's Retry-After when that is longer, up to LaterMax; attempt MaxAttempts is the last.
// Operator commands use the quick tries alone, with a longer QuickMaxWait: a person waits.
type Policy struct {
	QuickAttempts int           // tries per call in process, including the first
	QuickBase     time.Duration // wait before the second try; doubles per try
	QuickMaxWait  time.Duration // a wait (Retry-After included) longer than this ends the quick tries
	LaterBase     time.Duration // delay after attempt 1
	LaterMax      time.Duration // cap on the delay before jitter
	MaxAttempts   int           // delivery attempts before MaxAttemptsExceeded
}

// WithDefaults returns p with each zero or negative field taken from d.
func (p Policy) WithDefaults(d Policy) Policy {
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
// downstream's Retry-After and a jitter sample in [0,1). ok is false when waiting in process
// would take longer than QuickMaxWait: the caller should stop trying in process.
func (p Policy) QuickWait(try int, retryAfter time.Duration, jitter float64) (wait time.Duration, ok bool) {
	d := p.QuickBase << min(max(try-1, 0), 20)
	// Equal jitter: between half and all of the exponential step, so concurrent callers spread out.
	wait = d/2 + time.Duration(float64(d/2)*jitter)
	wait = max(wait, retryAfter)
	return wait, wait <= p.QuickMaxWait
}

// LaterDelay is the delay before attempt n+1 after attempt n failed transiently. Jitter only
// lengthens the delay (by up to 20 %), so the schedule's total never falls below its design.
// A Retry-After is honoured up to LaterMax only: the header is the downstream's to choose, and
// one that names next week (or a date decades away) would otherwise park the event where no
// one looks, outliving the message's time to live.
func (p Policy) LaterDelay(n int, retryAfter time.Duration, jitter float64) time.Duration {
	d := p.LaterMax
	// Double only while that stays under LaterMax: shifting first would overflow a Duration
	// (30s·2^29 is negative) and a long attempts setting would retry at once.
	if shift := max(n-1, 0); shift < 63 && p.LaterBase <= p.LaterMax>>shift {
		d = p.LaterBase << shift
	}
	d += time.Duration(float64(d) * 0.2 * jitter)
	return max(d, min(retryAfter, p.LaterMax))
}

// Wait sleeps for d or until ctx is done, and returns ctx's error in that case.
func Wait(ctx context.Context, d time.Duration) error {
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

// maxRetryAfter caps what ParseRetryAfter reports, in both of the header's forms. Callers bound
// their waits further; this keeps an absurd header from overflowing or meaning "never".
const maxRetryAfter = 7 * 24 * time.Hour

// ParseRetryAfter reads a Retry-After header in either form RFC 9110 allows: delay-seconds or an
// HTTP date. It returns zero for an absent, malformed or past value, and at most a week.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Compare in seconds so the multiplication cannot overflow.
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}
