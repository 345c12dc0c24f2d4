package httpintake_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
)

// gatedPublisher holds every publish until open is closed, and says when one has started.
type gatedPublisher struct {
	started chan struct{}
	open    chan struct{}
}

func (p *gatedPublisher) Publish(ctx context.Context, _ *queue.Message) error {
	p.started <- struct{}{}
	select {
	case <-p.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchedBody records whether anything read it.
type watchedBody struct {
	io.Reader
	read atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.Reader.Read(p)
}

func (b *watchedBody) Close() error { return nil }

func TestForwarded_answers_503_unread_when_MaxInFlight_requests_are_in_flight(t *testing.T) {
	pub := &gatedPublisher{started: make(chan struct{}, 1), open: make(chan struct{})}
	in := webhook.New(webhook.Config{MaxInFlight: 1, Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, pub, slog.New(slog.DiscardHandler))
	h := httpintake.Forwarded(in, 0)

	first := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, forwardedRequest(t, http.MethodPost, eventBody))
		first <- rec.Code
	}()
	<-pub.started // the first request holds the only place, waiting on the queue

	req := forwardedRequest(t, http.MethodPost, eventBody)
	body := &watchedBody{Reader: strings.NewReader(eventBody)}
	req.Body = body
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503: %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Retry-After") == "" || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("headers = %v", rec.Header())
	}
	var p struct{ Type string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type != webhook.ProblemTypeBase+"overloaded" {
		t.Errorf("problem %s (%v)", rec.Body, err)
	}
	if body.read.Load() {
		t.Error("the body of a request turned away was read")
	}

	close(pub.open)
	if code := <-first; code != http.StatusAccepted {
		t.Errorf("the admitted request got %d", code)
	}
	rec = httptest.NewRecorder()
	go func() { <-pub.started }()
	h.ServeHTTP(rec, forwardedRequest(t, http.MethodPost, eventBody))
	if rec.Code != http.StatusAccepted {
		t.Errorf("after the place was given back: status %d", rec.Code)
	}
}

func TestForwarded_refuses_an_unauthenticated_request_without_reading_its_body(t *testing.T) {
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, &recordingPublisher{}, slog.New(slog.DiscardHandler))
	req := forwardedRequest(t, http.MethodPost, "")
	req.Header.Set("X-Dvrelay-Secret", "guess")
	body := &watchedBody{Reader: strings.NewReader(eventBody)}
	req.Body, req.ContentLength = body, -1
	rec := httptest.NewRecorder()
	httpintake.Forwarded(in, 0).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d", rec.Code)
	}
	if body.read.Load() {
		t.Error("an unauthenticated caller's body was read")
	}
}

func TestEnvelope_answers_503_inside_a_200_when_MaxInFlight_requests_are_in_flight(t *testing.T) {
	pub := &gatedPublisher{started: make(chan struct{}, 1), open: make(chan struct{})}
	log := slog.New(slog.DiscardHandler)
	in := webhook.New(webhook.Config{MaxInFlight: 1, Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, pub, log)
	h := httpintake.Envelope(in, "req", log)

	first := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, invocation(t, ptr(eventBody), nil))
		first <- rec.Code
	}()
	<-pub.started

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, invocation(t, ptr(eventBody), nil))
	out := decodeEnvelope(t, rec.Result(), rec.Body.Bytes()).Outputs.Res
	if out.StatusCode != http.StatusServiceUnavailable || out.Headers["Retry-After"] == "" {
		t.Errorf("Outputs.res = %d %v", out.StatusCode, out.Headers)
	}
	if !strings.Contains(out.Body, webhook.ProblemTypeBase+"overloaded") {
		t.Errorf("Outputs.res.body = %s", out.Body)
	}
	close(pub.open)
	<-first
}

func TestForwarded_slow_senders_holding_every_connection_they_can_turn_no_legitimate_event_away(t *testing.T) {
	const maxInFlight, slowSenders, legitimate = 2, 8, 20
	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{MaxInFlight: maxInFlight, Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, pub, slog.New(slog.DiscardHandler))
	var entered atomic.Int64
	forwarded := httpintake.Forwarded(in, 0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		forwarded.ServeHTTP(w, r)
	}))
	defer srv.Close()

	// Authenticated senders that declare a small body and send it a byte at a time, more of
	// them than there are in-flight places, each holding its connection as long as it can.
	stop := make(chan struct{})
	var senders sync.WaitGroup
	defer func() { close(stop); senders.Wait() }()
	for range slowSenders {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		senders.Add(1)
		go func() {
			defer senders.Done()
			defer conn.Close()
			head := "POST /api/dataverse/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"X-Dvrelay-Secret: " + secret + "\r\nContent-Length: 200\r\n\r\n{"
			if _, err := io.WriteString(conn, head); err != nil {
				return
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(conn, " "); err != nil {
					return
				}
			}
		}()
	}
	for entered.Load() < slowSenders {
		time.Sleep(5 * time.Millisecond)
	}

	for i := range legitimate {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/dataverse/webhook", strings.NewReader(eventBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Dvrelay-Secret", secret)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("legitimate event %d among %d slow senders: status %d, want 202: %s", i+1, slowSenders, resp.StatusCode, b)
		}
	}
	if n := pub.count(); n != legitimate {
		t.Errorf("%d events queued, want %d", n, legitimate)
	}
}

func TestForwarded_answers_503_at_once_past_the_bytes_in_flight_and_takes_bodies_again_once_they_are_given_back(t *testing.T) {
	const size = 40_000
	pub := &gatedPublisher{started: make(chan struct{}, 2), open: make(chan struct{})}
	in := webhook.New(webhook.Config{MaxInFlight: 16, MaxBodyBytes: 50_000, MaxBytesInFlight: 100_000, Secrets: [][]byte{[]byte(secret)}},
		tinyParser{}, pub, slog.New(slog.DiscardHandler))
	h := httpintake.Forwarded(in, 0)
	big := `{"EventId":"evt-big","pad":"` + strings.Repeat("x", size-30) + `"}`

	held := make(chan int, 2)
	for range 2 { // two bodies held while the queue does not answer: 80,000 of 100,000 bytes
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, forwardedRequest(t, http.MethodPost, big))
			held <- rec.Code
		}()
	}
	<-pub.started
	<-pub.started

	for _, chunked := range []bool{false, true} {
		req := forwardedRequest(t, http.MethodPost, "")
		body := &watchedBody{Reader: strings.NewReader(big)}
		req.Body, req.ContentLength = body, int64(len(big))
		if chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("chunked %v: a third body past the bound got %d %v, want 503 with Retry-After", chunked, rec.Code, rec.Header())
		}
		if !strings.Contains(rec.Body.String(), "bytes") {
			t.Errorf("chunked %v: the problem does not say the bytes bound was met: %s", chunked, rec.Body)
		}
		if !chunked && body.read.Load() {
			t.Error("a body whose declared length is past the bound was read")
		}
	}
	// A small event still fits beside them.
	go func() { <-pub.started }()
	small := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, forwardedRequest(t, http.MethodPost, eventBody))
		small <- rec.Code
	}()

	close(pub.open)
	for range 2 {
		if code := <-held; code != http.StatusAccepted {
			t.Errorf("a held body got %d", code)
		}
	}
	if code := <-small; code != http.StatusAccepted {
		t.Errorf("a small event beside the held bodies got %d", code)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, forwardedRequest(t, http.MethodPost, big))
	if rec.Code != http.StatusAccepted {
		t.Errorf("once the bytes were given back, a big body got %d: %s", rec.Code, rec.Body)
	}
}

func TestForwarded_cuts_off_senders_that_stall_so_they_cannot_hold_the_bytes_in_flight(t *testing.T) {
	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{MaxBodyBytes: 50_000, MaxBytesInFlight: 50_001, Secrets: [][]byte{[]byte(secret)}},
		tinyParser{}, pub, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(httpintake.Forwarded(in, 0)) // no read timeout: only the pace cuts them
	defer srv.Close()

	// Three senders declare 16,000 bytes each, send 15,000 and stall: their buffers hold 48,000
	// of the 50,001 bytes the intake may hold.
	const senders = 3
	cut := make(chan struct{}, senders)
	for range senders {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := "POST /api/dataverse/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"X-Dvrelay-Secret: " + secret + "\r\nContent-Length: 16000\r\n\r\n{\"pad\":\"" + strings.Repeat("x", 14_990)
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = io.Copy(io.Discard, conn) // returns once the server hangs up
			cut <- struct{}{}
		}()
	}

	event := `{"EventId":"evt-5k","pad":"` + strings.Repeat("x", 5000) + `"}`
	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/dataverse/webhook", strings.NewReader(event))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Dvrelay-Secret", secret)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	time.Sleep(200 * time.Millisecond) // the senders' bytes arrive
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("with the stalled senders' bytes held, an event got %d, want 503", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for post() != http.StatusAccepted {
		if time.Now().After(deadline) {
			t.Fatal("stalled senders held the bytes in flight for 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range senders {
		select {
		case <-cut:
		case <-time.After(10 * time.Second):
			t.Fatal("a stalled sender's connection is still open")
		}
	}
}
