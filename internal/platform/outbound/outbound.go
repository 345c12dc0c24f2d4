// Package outbound is the one policy for HTTP requests dvrelay sends: the http steps, the
// Dataverse client and the admin client all build their *http.Client with NewClient.
//
// The policy:
//
//   - Redirects are refused. A 3xx that the client would follow ends the call with a
//     *RedirectError naming the status and the Location, and nothing is sent to the Location.
//     Following one would carry the request's headers (a bearer token, a webhook secret, the
//     Idempotency-Key) and body to a host nobody configured, possibly in plain HTTP, and a POST
//     would silently become a GET; the caller would then report success for a write that never
//     reached its target. Callers classify a RedirectError as permanent: the same URL answers
//     the same way on every try, and an operator has to fix the setting.
//   - Response bodies are bounded. A body longer than Options.MaxResponseBytes fails to read
//     with ErrResponseTooLarge after that many bytes, so no answer can exhaust memory.
//     ReadLimited reads a body up to a limit of the caller's own and says whether it was cut.
//   - Every call has a timeout (Options.Timeout), and the transport bounds each phase of it:
//     dialling, the TLS handshake and the wait for response headers, with idle connections
//     kept for reuse. Callers narrow a single call further with a context deadline.
//   - TLS certificates are verified as usual. Callers classify a verification failure as
//     transient: an expired or replaced certificate is fixed by an operator, and every event
//     meanwhile would fail alike, so none of them should be dead-lettered for it.
package outbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/platform/oneline"
)

const (
	// DefaultTimeout bounds a call when Options.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxResponseBytes bounds a response body when Options.MaxResponseBytes is zero.
	DefaultMaxResponseBytes = 1 << 20

	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	maxIdleConns        = 100
)

// Options tune a client. The zero value is the policy's defaults.
type Options struct {
	// Timeout bounds a whole call, reading the body included; zero means DefaultTimeout. It
	// also bounds the wait for response headers.
	Timeout time.Duration
	// MaxResponseBytes bounds what can be read of a response body; zero means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Concurrency is the most calls the client's user makes at once (the worker's
	// concurrency); zero means config.DefaultWorkerConcurrency. The client keeps that many idle
	// connections per host, and at least maxIdleConns in all, so a busy caller reuses its
	// connections instead of closing the ones beyond the pool after each call and dialling
	// again (net/http keeps 2).
	Concurrency int
}

// NewClient returns a client that applies the package's policy. Build one per use and keep it:
// its transport pools connections.
func NewClient(opts Options) *http.Client {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = config.DefaultWorkerConcurrency
	}
	transport := &http.Transport{
		// The standard proxy variables still apply, as with http.DefaultTransport.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: opts.Timeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          max(maxIdleConns, opts.Concurrency),
		MaxIdleConnsPerHost:   opts.Concurrency,
	}
	return &http.Client{
		Transport:     &boundedTransport{next: transport, limit: opts.MaxResponseBytes},
		CheckRedirect: refuseRedirect,
		Timeout:       opts.Timeout,
	}
}

// RedirectError reports a 3xx answer the client refused to follow.
type RedirectError struct {
	Status int
	// Location is the answer's Location header as it may be printed (oneline.URL): a redirect
	// often repeats the query of the URL it came from (http to https, a trailing slash), and the
	// query may hold a key. It is not resolved against the request URL, for the same reason.
	Location string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect refused: %d %s to %s", e.Status, http.StatusText(e.Status), e.Location)
}

// refuseRedirect is the client's CheckRedirect. http.Client calls it before sending the
// request to the new location; req.Response is the 3xx that asked for it.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	e := &RedirectError{}
	if req.Response != nil {
		e.Status = req.Response.StatusCode
		e.Location = oneline.URL(req.Response.Header.Get("Location"))
	}
	return e
}

// ErrResponseTooLarge is the read error of a response body longer than the client's
// MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body too large")

// boundedTransport caps every response body at limit bytes.
type boundedTransport struct {
	next  http.RoundTripper
	limit int64
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &boundedBody{ReadCloser: resp.Body, left: t.limit, limit: t.limit}
	return resp, nil
}

// boundedBody yields up to limit bytes, then ErrResponseTooLarge if the body goes on. It reads
// one byte past the limit to tell a body of exactly limit bytes from a longer one.
type boundedBody struct {
	io.ReadCloser
	left, limit int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, b.tooLarge()
	}
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) tooLarge() error {
	return fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, b.limit)
}

// ReadLimited returns at most limit bytes of r; truncated reports that r held more. It reads
// one byte past the limit to know, and no further, so the rest of r is left unread. A body the
// client cut at its own MaxResponseBytes (ErrResponseTooLarge) counts as truncated, not as an
// error. A negative limit counts as zero.
func ReadLimited(r io.Reader, limit int64) (data []byte, truncated bool, err error) {
	limit = max(limit, 0)
	data, err = io.ReadAll(io.LimitReader(r, limit+min(1, math.MaxInt64-limit)))
	if errors.Is(err, ErrResponseTooLarge) {
		return data[:min(int64(len(data)), limit)], true, nil
	}
	if err != nil {
		return data[:min(int64(len(data)), limit)], false, err
	}
	if int64(len(data)) > limit {
		return data[:limit], true, nil
	}
	return data, false, nil
}

// RedactError hides what the URL repeated by a *url.Error in err may hold (oneline.URL), so a
// client's error can be printed: http.Client.Do repeats the request's URL, query string and all.
func RedactError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		uerr.URL = oneline.URL(uerr.URL)
	}
	return err
}
