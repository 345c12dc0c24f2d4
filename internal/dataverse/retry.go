package dataverse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/retry"
)

// Retry waits out what the Web API asks a caller to wait out, for operator commands that run
// until they are done (handler register, handler recover). The worker does not use it: it
// schedules a retry on the queue rather than hold a delivery. Both decide with the same
// classifier and back-off (internal/platform/retry). The zero value is ready to use.
type Retry struct {
	// MaxAttempts bounds tries per call; 0 means 5.
	MaxAttempts int
	// MaxWait is the longest wait, Retry-After included; a longer one ends the call. 0 means
	// 5 minutes.
	MaxWait time.Duration
	// Sleep waits between tries; nil means a timer. Tests pass one that records the wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnWait, when set, hears about each wait before it starts (to tell the person why).
	OnWait func(d time.Duration, cause error)
	// Jitter returns a sample in [0,1) that spreads the back-off; nil means a random one.
	Jitter func() float64
}

// operatorBase is the first back-off step of an operator command: waits of 1–2 s, 2–4 s,
// 4–8 s… when the Web API gives no Retry-After.
const operatorBase = 2 * time.Second

// Do runs call, and again while it fails transiently (retry.Classify): a 429 (service
// protection limits) waits as long as Retry-After asks, other transient failures back off.
// A call that is not idempotent (a create) is sent again only when the answer proves it was not
// carried out (401, 408, 429): a create that timed out at a gateway may have happened.
func (r Retry) Do(ctx context.Context, idempotent bool, call func() error) error {
	p := retry.Policy{QuickAttempts: r.MaxAttempts, QuickBase: operatorBase, QuickMaxWait: r.MaxWait}.
		WithDefaults(retry.Policy{QuickAttempts: 5, QuickMaxWait: 5 * time.Minute})
	sleep, jitter := r.Sleep, r.Jitter
	if sleep == nil {
		sleep = retry.Wait
	}
	if jitter == nil {
		jitter = rand.Float64
	}
	for try := 1; ; try++ {
		err := call()
		if err == nil {
			return nil
		}
		v := retry.Classify(err)
		if v.Class != retry.Transient || (!idempotent && !v.NotCarriedOut) || try >= p.QuickAttempts || ctx.Err() != nil {
			return err
		}
		wait, ok := p.QuickWait(try, v.RetryAfter, jitter())
		if !ok {
			return fmt.Errorf("the Web API asked to wait %s before the next request, longer than %s; run again later: %w", wait, p.QuickMaxWait, err)
		}
		if r.OnWait != nil {
			r.OnWait(wait, err)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting %s as the Web API asked: %w", wait, err)
		}
	}
}
