package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/outbound"
	"github.com/dvrelay/dvrelay/internal/platform/problem"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/support"
)

// Limits of one call to the admin routes.
const (
	// clientTimeout bounds a whole call, answer included.
	clientTimeout = 30 * time.Second
	// MaxAnswerBytes bounds an answer: a listing of maxListLimit dead letters with their bodies
	// (each under a Service Bus message's 256 KB in practice) fits; anything larger is refused
	// rather than read into memory.
	MaxAnswerBytes = 64 << 20
)

// Client calls the admin routes of a running `handler serve`.
type Client struct {
	base      string
	header    string
	secret    string
	http      *http.Client
	maxAnswer int64
}

// NewClient calls the server at addr (host:port). When secret is not empty it is sent in
// header, to that server only: a redirect is refused, never followed, so neither the secret
// nor the request goes anywhere else, and no answer from another server is taken for its own.
func NewClient(addr, header, secret string) *Client {
	return &Client{
		base:      "http://" + addr,
		header:    header,
		secret:    secret,
		maxAnswer: MaxAnswerBytes,
		http:      outbound.NewClient(outbound.Options{Timeout: clientTimeout, MaxResponseBytes: MaxAnswerBytes}),
	}
}

// Addr is the host:port the client calls.
func (c *Client) Addr() string { return strings.TrimPrefix(c.base, "http://") }

// ListDeadLetters lists at most limit dead letters, oldest first.
func (c *Client) ListDeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	return c.QueryDeadLetters(ctx, queue.DeadLetterFilter{Limit: limit})
}

// QueryDeadLetters lists the dead letters f selects, oldest first. f.Seq is not a query
// parameter: ask for one dead letter with DeadLetter.
func (c *Client) QueryDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]DeadLetter, error) {
	q := url.Values{"limit": {strconv.Itoa(f.Max())}}
	set := func(name, v string) {
		if v != "" {
			q.Set(name, v)
		}
	}
	set("reason", f.Reason)
	set("entity", f.Entity)
	set("eventId", f.EventID)
	if f.AfterSeq > 0 {
		q.Set("after", strconv.FormatInt(f.AfterSeq, 10))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Before.IsZero() {
		q.Set("before", f.Before.UTC().Format(time.RFC3339Nano))
	}
	var out deadLetterList
	err := c.do(ctx, http.MethodGet, pathDeadLetters+"?"+q.Encode(), &out)
	return out.DeadLetters, err
}

// DeadLetter reads dead letter seq with its event's history; queue.ErrNotFound when nothing is
// parked under seq.
func (c *Client) DeadLetter(ctx context.Context, seq int64) (Detail, error) {
	var out Detail
	err := c.do(ctx, http.MethodGet, pathDeadLetters+"/"+strconv.FormatInt(seq, 10), &out)
	return out, err
}

// Resubmit sends dead letter seq back to the main queue and returns its new message id;
// queue.ErrNotFound when nothing is parked under seq.
func (c *Client) Resubmit(ctx context.Context, seq int64) (string, error) {
	var out resubmitted
	err := c.do(ctx, http.MethodPost, pathDeadLetters+"/"+strconv.FormatInt(seq, 10)+"/resubmit", &out)
	return out.MessageID, err
}

// Purge deletes dead letter seq for good; queue.ErrNotFound when nothing is parked under seq.
func (c *Client) Purge(ctx context.Context, seq int64) error {
	var out purged
	return c.do(ctx, http.MethodPost, pathDeadLetters+"/"+strconv.FormatInt(seq, 10)+"/purge", &out)
}

// Record asks what happened to the record, event or correlation q names.
func (c *Client) Record(ctx context.Context, q string) (support.Record, error) {
	var out support.Record
	err := c.do(ctx, http.MethodGet, pathRecords+"?"+url.Values{"q": {q}}.Encode(), &out)
	return out, err
}

// StatusError is a non-2xx answer from the server, with the detail of its problem document.
// It is queue.ErrNotFound when the server said nothing is parked under the sequence number.
type StatusError struct {
	Method, Path string
	Status       string // "404 Not Found"
	Code         int
	ProblemType  string // the problem document's type; empty when the answer was not one
	Detail       string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.Path, e.Status, e.Detail)
}

// Is makes errors.Is(err, queue.ErrNotFound) hold for the server's dead-letter-not-found.
func (e *StatusError) Is(target error) bool {
	return target == queue.ErrNotFound && e.ProblemType == problem.TypeBase+notFoundKind
}

// do calls path and decodes a 2xx answer into out; any other answer is a *StatusError.
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.secret != "" {
		req.Header.Set(c.header, c.secret)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ask handler serve at %s: %w", c.base, outbound.RedactError(err))
	}
	defer resp.Body.Close()
	body, truncated, err := outbound.ReadLimited(resp.Body, c.maxAnswer)
	if err != nil {
		return fmt.Errorf("%s %s: %s: read answer: %w", method, path, resp.Status, err)
	}
	if truncated {
		return fmt.Errorf("%s %s: %s: %w: more than %d bytes", method, path, resp.Status, errTooLarge, c.maxAnswer)
	}
	if resp.StatusCode/100 != 2 {
		var p struct{ Type, Detail string }
		_ = json.Unmarshal(body, &p)
		return &StatusError{Method: method, Path: path, Status: resp.Status, Code: resp.StatusCode,
			ProblemType: p.Type, Detail: p.Detail}
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// errTooLarge reports an answer past MaxAnswerBytes.
var errTooLarge = errors.New("answer too large")
