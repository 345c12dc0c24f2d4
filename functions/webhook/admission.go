package webhook

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxInFlight is MaxInFlight when Config leaves it zero. More requests in flight let more
// events share each commit of the embedded queue, so throughput grows with the bound, but less
// and less, while an admitted request's wait grows in proportion (about bound ÷ throughput) and
// the excess is answered more slowly. 64 is where a twice-capacity overload on a small machine
// still had its excess answered promptly; BENCHMARKS.md ("The in-flight bound at 2× capacity")
// has the figures.
const DefaultMaxInFlight = 64

// Admit is the intake's admission control, run by the transport before it reads the body. It
// first gives every answer the headers alone decide (method, declared size, content type, secret),
// in Handle's order, so an unauthenticated caller never holds a place or makes the body be read.
// Then it takes one of MaxInFlight places. When all are taken it refuses with 503 and Retry-After
// at once: queueing the request instead would only make every caller wait past its deadline and
// hold its memory meanwhile.
//
// When ok, the transport reads the body, calls Handle and then release (safe to call more than
// once). When not ok, it answers res, which is already logged.
func (in *Intake) Admit(ctx context.Context, req Request) (release func(), res Response, ok bool) {
	start := time.Now()
	err := in.checkHeaders(req)
	if err == nil {
		select {
		case in.slots <- struct{}{}:
			var once sync.Once
			return func() { once.Do(func() { <-in.slots }) }, Response{}, true
		default:
			err = &Error{Kind: KindOverloaded, Detail: fmt.Sprintf(
				"the intake is handling its limit of %d requests; retry later", in.cfg.MaxInFlight)}
		}
	}
	rec := newRecord(req.Header)
	return nil, in.finish(ctx, rec, Response{}, err, start), false
}

// checkHeaders runs the checks that need no body: method, declared size, content type, secret.
func (in *Intake) checkHeaders(req Request) error {
	if req.Method != http.MethodPost {
		return errMethod()
	}
	if req.ContentLength > in.cfg.MaxBodyBytes {
		return in.errTooLarge()
	}
	return in.checkMediaAndSecret(req.Header)
}
