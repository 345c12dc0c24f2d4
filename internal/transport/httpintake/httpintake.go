// Package httpintake serves the webhook intake over HTTP, in the two forms the handler meets:
// the raw request (standalone mode, and Functions mode with enableForwardingHttpRequest) and the
// Functions host's invocation envelope (POST /<FunctionName>). It only translates; every
// decision, error status included, is the intake's.
package httpintake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
)

// Intake is what the adapters need from *webhook.Intake.
type Intake interface {
	Screen(ctx context.Context, req webhook.Request) (refusal webhook.Response, ok bool)
	Admit(ctx context.Context, req webhook.Request) (release func(), refusal webhook.Response, ok bool)
	Enter(ctx context.Context) (release func(), refusal webhook.Response, ok bool)
	ReadBody(r io.Reader, declared, limit int64) (*webhook.Body, error)
	Handle(ctx context.Context, req webhook.Request) webhook.Response
	MaxBodyBytes() int64
}

var _ Intake = (*webhook.Intake)(nil)

// Forwarded serves the raw webhook request (POST /api/dataverse/webhook). The intake screens
// the request on its headers before a byte of the body is read, so a caller it turns away
// (unauthenticated, or past the in-flight bound) costs no body read. It takes its in-flight place
// only once the body has arrived, so a slow sender holds its own connection and nothing else. It
// reads at most MaxBodyBytes+1 bytes, so an oversized body is refused without being buffered, and
// under the intake's bound on bytes in flight. The body must keep pace (see pacedBody), so a
// sender cannot hold part of that bound by sending slowly either.
//
// readTimeout is the server's bound on the whole request (DVRELAY_READ_TIMEOUT), which the pace
// never extends; zero leaves the pace unbounded but for the server's own timeouts.
func Forwarded(in Intake, readTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		// Forwarded by the host, the request carries its invocation id; in serve mode it has none.
		ctx := customhandler.InvocationContext(r)
		req := webhook.Request{Method: r.Method, Header: r.Header, ContentLength: r.ContentLength}
		if refusal, ok := in.Screen(ctx, req); !ok {
			writeResponse(w, refusal)
			return
		}
		var reader io.Reader = r.Body
		if r.Body != nil {
			reader = newPacedBody(r.Body, http.NewResponseController(w), started, readTimeout)
		}
		body, err := in.ReadBody(reader, r.ContentLength, in.MaxBodyBytes())
		defer body.Release()
		req.Body, req.BodyTooLarge, req.ReadErr = body.Bytes, body.TooLarge, err
		release, refusal, ok := in.Admit(ctx, req)
		if !ok {
			writeResponse(w, refusal)
			return
		}
		defer release()
		writeResponse(w, in.Handle(ctx, req))
	})
}

func writeResponse(w http.ResponseWriter, res webhook.Response) {
	h := w.Header()
	for k, vs := range res.Header {
		h[k] = vs
	}
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// Envelope serves the HTTP trigger invocation the host posts to /<FunctionName> when it does
// not forward the request: it decodes Data.<binding>, runs the intake, and returns its answer
// in Outputs.res. The host's own POST is always 200 unless the envelope itself is unreadable;
// the caller's status travels inside.
//
// It bounds before it decodes, as the forwarded path bounds before it reads: the envelope is read
// under the intake's bound on bytes in flight, an envelope too big to hold a body within the limit
// is refused without being decoded (envelopeHolds), and the in-flight place is taken before the
// decoding, which decodes at most customhandler.MaxFields headers.
func Envelope(in Intake, binding string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every line written for this invocation carries its id.
		ctx := customhandler.InvocationContext(r)
		if r.Method != http.MethodPost {
			// The host only ever POSTs here; anything else did not come from it.
			writeResponse(w, in.Handle(ctx, webhook.Request{Method: r.Method, Header: http.Header{}, ContentLength: -1}))
			return
		}
		envelope, err := in.ReadBody(r.Body, r.ContentLength, envelopeLimit(in.MaxBodyBytes()))
		defer envelope.Release()
		var overloaded *webhook.Error
		switch {
		case errors.As(err, &overloaded):
			writeEnvelope(ctx, w, log, in.Handle(ctx, webhook.Request{Method: http.MethodPost, Header: http.Header{}, ReadErr: err, ContentLength: -1}))
			return
		case err != nil:
			customhandler.WriteFailure(ctx, w, log, fmt.Errorf("read invocation: %w", err))
			return
		case envelope.TooLarge || !envelopeHolds(envelope.Bytes, in.MaxBodyBytes()):
			// Only a body past the limit makes the envelope this big.
			writeEnvelope(ctx, w, log, in.Handle(ctx, webhook.Request{Method: http.MethodPost, Header: http.Header{}, BodyTooLarge: true, ContentLength: -1}))
			return
		}
		release, refusal, ok := in.Enter(ctx)
		if !ok {
			writeEnvelope(ctx, w, log, refusal)
			return
		}
		defer release()
		hr, err := customhandler.DecodeHTTPTrigger(envelope.Bytes, binding)
		if err != nil {
			// The host sent something we cannot read: fail the invocation rather than blame
			// the caller's payload.
			customhandler.WriteFailure(ctx, w, log, fmt.Errorf("decode http trigger: %w", err))
			return
		}
		writeEnvelope(ctx, w, log, in.Handle(ctx, webhook.Request{
			Method:        hr.Method,
			Header:        hr.Header,
			Body:          hr.Body,
			ContentLength: hr.ContentLength(),
		}))
	})
}

// envelopeLimit bounds the envelope read. JSON string escaping can grow a body up to six times
// (\u00XX for control bytes); headers, URL and metadata add a little more.
func envelopeLimit(maxBody int64) int64 { return 6*maxBody + envelopeExtra }

// envelopeExtra is what an envelope holds besides its body and the body's copy in Metadata: the
// URL, query and headers, twice (Data and Metadata), and the host's own fields. The host takes
// at most 100 headers of 32 KB in all and URLs of 8 KB.
const envelopeExtra = 256 << 10

// envelopeHolds reports, from one pass over its bytes and without decoding it, whether an
// envelope can hold a body within maxBody. It counts what the envelope's text decodes to, an
// escape as the most bytes it stands for; the host writes the body once in Data and, for a JSON
// object, each of its properties again in Metadata, each string escaped once more (up to twice
// its size), so three bodies' worth and envelopeExtra is the most an acceptable body makes.
// Decoding then costs at most a constant times the body limit, whatever the envelope holds.
func envelopeHolds(envelope []byte, maxBody int64) bool {
	most := 3*maxBody + envelopeExtra
	var decoded int64
	for i := 0; i < len(envelope); i++ {
		if envelope[i] == '\\' && i+1 < len(envelope) {
			if envelope[i+1] == 'u' {
				i += 5 // \uXXXX: at most 3 bytes of UTF-8
				decoded += 3
				continue
			}
			i++ // \n, \", ...: one byte
		}
		decoded++
		if decoded > most {
			return false
		}
	}
	return true
}

func writeEnvelope(ctx context.Context, w http.ResponseWriter, log *slog.Logger, res webhook.Response) {
	logs := []string{fmt.Sprintf("webhook answered %d correlationId=%s", res.Status, res.Header.Get(webhook.HeaderCorrelationID))}
	err := customhandler.WriteHTTPResponse(w, "res", customhandler.HTTPResponse{
		StatusCode: res.Status,
		Header:     res.Header,
		Body:       res.Body,
	}, logs)
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "write invocation result", slog.String("error", err.Error()))
	}
}

// The pace a body must keep: after bodyGrace, at least minBodyRate bytes a second on average.
// Dataverse posts from Azure at many times this rate, and a caller on a slow link sends a
// payload of a few KB well within the grace; a sender slower than this holds a connection and
// part of the bytes in flight for no event that could arrive in time.
const (
	minBodyRate = 64 << 10 // bytes a second
	bodyGrace   = 2 * time.Second
)

// pacedBody cuts a body off once it falls behind the pace: before each read it sets the
// connection's read deadline to bodyGrace after the request began, plus the time the bytes
// received so far may take at minBodyRate, never past the request's read timeout. A sender that
// stalls is cut at that deadline instead of at the read timeout. Where the connection takes no
// deadline (HTTP/2 streams before Go 1.23, test recorders), the server's own timeouts apply.
type pacedBody struct {
	r        io.Reader
	rc       *http.ResponseController
	deadline time.Time
	last     time.Time // zero: no read timeout to stay within
	paced    bool
}

func newPacedBody(r io.Reader, rc *http.ResponseController, started time.Time, readTimeout time.Duration) *pacedBody {
	p := &pacedBody{r: r, rc: rc, deadline: started.Add(bodyGrace), paced: true}
	if readTimeout > 0 {
		p.last = started.Add(readTimeout)
	}
	return p
}

func (p *pacedBody) Read(b []byte) (int, error) {
	if p.paced {
		deadline := p.deadline
		if !p.last.IsZero() && deadline.After(p.last) {
			deadline = p.last
		}
		if err := p.rc.SetReadDeadline(deadline); err != nil {
			p.paced = false
		}
	}
	n, err := p.r.Read(b)
	p.deadline = p.deadline.Add(time.Duration(n) * time.Second / minBodyRate)
	return n, err
}
