package httpintake_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
)

// watchedIntake is the real intake, recording what Handle was given.
type watchedIntake struct {
	*webhook.Intake
	mu      sync.Mutex
	handled []webhook.Request
}

func (w *watchedIntake) Handle(ctx context.Context, req webhook.Request) webhook.Response {
	w.mu.Lock()
	w.handled = append(w.handled, req)
	w.mu.Unlock()
	return w.Intake.Handle(ctx, req)
}

// countingBody counts the bytes read of it.
type countingBody struct {
	io.Reader
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error { return nil }

func TestEnvelope_refuses_a_5_MB_body_with_413_without_decoding_it(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	in := &watchedIntake{Intake: webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, &recordingPublisher{}, log)}
	body := `{"EventId":"evt-big","pad":"` + strings.Repeat("x", 5<<20) + `"}`
	req := invocation(t, &body, nil)
	counted := &countingBody{Reader: req.Body}
	req.Body = counted
	rec := httptest.NewRecorder()
	httpintake.Envelope(in, "req", log).ServeHTTP(rec, req)

	if out := decodeEnvelope(t, rec.Result(), rec.Body.Bytes()).Outputs.Res; out.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("Outputs.res.statusCode = %d, want 413: %s", out.StatusCode, out.Body)
	}
	if len(in.handled) != 1 || !in.handled[0].BodyTooLarge || in.handled[0].Body != nil || in.handled[0].Header.Get("X-Dvrelay-Secret") != "" {
		t.Errorf("the intake was handed a decoded request: %d requests, the first with %d body bytes and headers %v",
			len(in.handled), len(in.handled[0].Body), in.handled[0].Header)
	}
	if limit := int64(6<<20 + 256<<10); counted.n > limit {
		t.Errorf("read %d bytes of the envelope, past its limit %d", counted.n, limit)
	}
}

func TestEnvelope_fails_an_invocation_with_100000_headers_without_decoding_them(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	in := &watchedIntake{Intake: webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, tinyParser{}, &recordingPublisher{}, log)}
	headers := map[string][]string{}
	for i := range 100_000 {
		headers[fmt.Sprintf("X-H-%d", i)] = []string{"v"}
	}
	raw, err := io.ReadAll(invocation(t, ptr(eventBody), headers).Body)
	if err != nil {
		t.Fatal(err)
	}
	h := httpintake.Envelope(in, "req", log)
	var status int
	allocs := testing.AllocsPerRun(1, func() {
		req := httptest.NewRequest(http.MethodPost, "/DataverseWebhook", bytes.NewReader(raw))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		status = rec.Code
	})
	if status != http.StatusInternalServerError {
		t.Errorf("the host got %d, want 500: an invocation no host sends is failed", status)
	}
	if len(in.handled) != 0 {
		t.Errorf("the intake was handed %d requests", len(in.handled))
	}
	// Decoding them all takes several allocations a header; stopping at the bound, a few thousand.
	if allocs > 10_000 {
		t.Errorf("%.0f allocations for an envelope of 100,000 headers", allocs)
	}
}
