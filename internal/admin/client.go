package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dvrelay/dvrelay/internal/outbound"
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

// ListDeadLetters lists at most limit dead letters, oldest first.
func (c *Client) ListDeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	var out deadLetterList
	err := c.do(ctx, http.MethodGet, pathDeadLetters+"?limit="+strconv.Itoa(limit), &out)
	return out.DeadLetters, err
}

// Resubmit sends dead letter seq back to the main queue and returns its new message id.
func (c *Client) Resubmit(ctx context.Context, seq int64) (string, error) {
	var out resubmitted
	err := c.do(ctx, http.MethodPost, pathDeadLetters+"/"+strconv.FormatInt(seq, 10)+"/resubmit", &out)
	return out.MessageID, err
}

// do calls path and decodes a 2xx answer into out; any other answer is an error quoting the
// problem's detail.
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
		return fmt.Errorf("ask handler serve at %s: %w", c.base, err)
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
		var p struct{ Detail string }
		_ = json.Unmarshal(body, &p)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// errTooLarge reports an answer past MaxAnswerBytes.
var errTooLarge = errors.New("answer too large")
