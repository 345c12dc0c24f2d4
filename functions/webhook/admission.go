package webhook

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Screen is the intake's admission control before the body is read, run by the transport on the
// headers. It gives every answer the headers alone decide (method, declared size, content type,
// secret), in Handle's order, so an unauthenticated caller never makes the body be read. Then,
// when all MaxInFlight places are taken, or the declared body would take the bytes in flight
// past MaxBytesInFlight, it refuses with 503 and Retry-After at once: queueing the request
// instead would only make every caller wait past its deadline and hold its memory meanwhile.
//
// Screen takes no place. A place is taken by Admit once the body has arrived, so a caller who
// sends its body slowly costs only its own connection (cut off at DVRELAY_READ_TIMEOUT) and never
// holds a place an event that has arrived could use.
//
// When not ok, the transport answers res, which is already logged.
func (in *Intake) Screen(ctx context.Context, req Request) (res Response, ok bool) {
	start := time.Now()
	err := in.checkHeaders(req)
	switch {
	case err != nil:
	case len(in.slots) == cap(in.slots):
		err = in.errOverloaded()
	case req.ContentLength > in.bytes.free():
		err = in.errBytesOverloaded()
	}
	if err == nil {
		return Response{}, true
	}
	return in.finish(ctx, newRecord(req.Header), Response{}, err, start), false
}

// Admit takes one of MaxInFlight places for a request whose body has arrived, after the header
// checks of Screen (repeated here, so a transport that has the whole request at once needs only
// Admit). When all places are taken it refuses with 503 and Retry-After at once.
//
// When ok, the transport calls Handle and then release (safe to call more than once). When not
// ok, it answers res, which is already logged.
func (in *Intake) Admit(ctx context.Context, req Request) (release func(), res Response, ok bool) {
	if err := in.checkHeaders(req); err != nil {
		return nil, in.finish(ctx, newRecord(req.Header), Response{}, err, time.Now()), false
	}
	return in.enter(ctx, req.Header)
}

// Enter takes one of MaxInFlight places without looking at the headers, for a transport that
// must do work worth bounding before it can see them: the Functions envelope has to be decoded
// to find the caller's headers. Handle makes every check after. When all places are taken it
// refuses with 503 and Retry-After at once; otherwise as Admit.
func (in *Intake) Enter(ctx context.Context) (release func(), res Response, ok bool) {
	return in.enter(ctx, nil)
}

func (in *Intake) enter(ctx context.Context, h http.Header) (release func(), res Response, ok bool) {
	select {
	case in.slots <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-in.slots }) }, Response{}, true
	default:
		return nil, in.finish(ctx, newRecord(h), Response{}, in.errOverloaded(), time.Now()), false
	}
}

func (in *Intake) errOverloaded() error {
	return &Error{Kind: KindOverloaded, Detail: fmt.Sprintf(
		"the intake is handling its limit of %d requests; retry later", in.cfg.MaxInFlight)}
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
