package webhook_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
)

func TestIntake_admits_up_to_MaxInFlight_and_answers_the_next_503_at_once(t *testing.T) {
	h := newHarness(t, webhook.Config{MaxInFlight: 2})
	req := validRequest()
	var releases []func()
	for i := range 2 {
		release, res, ok := h.in.Admit(context.Background(), req)
		if !ok {
			t.Fatalf("request %d refused with %d while a place was free", i+1, res.Status)
		}
		releases = append(releases, release)
	}

	_, res, ok := h.in.Admit(context.Background(), req)
	if ok {
		t.Fatal("a third request was admitted past MaxInFlight 2")
	}
	if res.Status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", res.Status)
	}
	p := decodeProblem(t, res)
	if p.Type != webhook.ProblemTypeBase+"overloaded" || p.Detail == "" {
		t.Errorf("problem = %+v", p)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q", res.Header.Get("Retry-After"))
	}
	if p.CorrelationID == "" || p.CorrelationID != res.Header.Get("X-Correlation-ID") {
		t.Errorf("correlationId %q, header %q", p.CorrelationID, res.Header.Get("X-Correlation-ID"))
	}

	releases[0]()
	release, _, ok := h.in.Admit(context.Background(), req)
	if !ok {
		t.Fatal("a place given back was not reused")
	}
	release()
	releases[1]()
	if n := len(h.pub.messages()); n != 0 {
		t.Errorf("admission published %d messages", n)
	}
}

func TestIntake_refuses_on_the_headers_before_the_body_is_read(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*webhook.Request)
		status int
	}{
		{"GET", func(r *webhook.Request) { r.Method = http.MethodGet }, http.StatusMethodNotAllowed},
		{"declared length over the limit", func(r *webhook.Request) { r.ContentLength = 1 << 30 }, http.StatusRequestEntityTooLarge},
		{"text/plain", func(r *webhook.Request) { r.Header.Set("Content-Type", "text/plain") }, http.StatusUnsupportedMediaType},
		{"wrong secret", func(r *webhook.Request) { r.Header.Set("X-Dvrelay-Secret", "guess") }, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// One place, taken: a refusal on the headers must still say what is wrong, not 503.
			h := newHarness(t, webhook.Config{MaxInFlight: 1, MaxBodyBytes: 1024})
			hold, _, ok := h.in.Admit(context.Background(), validRequest())
			if !ok {
				t.Fatal("the first request was refused")
			}
			defer hold()

			req := validRequest()
			req.Body = nil
			tc.edit(&req)
			_, res, ok := h.in.Admit(context.Background(), req)
			if ok {
				t.Fatal("admitted")
			}
			if res.Status != tc.status {
				t.Errorf("status = %d, want %d (%s)", res.Status, tc.status, res.Body)
			}
			decodeProblem(t, res)
		})
	}
}

func TestIntake_places_are_given_back_once_however_often_release_is_called(t *testing.T) {
	h := newHarness(t, webhook.Config{MaxInFlight: 1})
	release, _, ok := h.in.Admit(context.Background(), validRequest())
	if !ok {
		t.Fatal("refused")
	}
	release()
	release() // a deferred release after an explicit one must not free a place someone else holds
	second, _, ok := h.in.Admit(context.Background(), validRequest())
	if !ok {
		t.Fatal("refused after release")
	}
	defer second()
	if _, _, ok := h.in.Admit(context.Background(), validRequest()); ok {
		t.Error("a double release made room for two requests under MaxInFlight 1")
	}
}

// BenchmarkIntake_Admit_refused_parallel is an overload's excess: every request finds the
// in-flight places taken and is answered 503, logging through the JSON handler to a file, as
// handler serve logs to its stderr.
func BenchmarkIntake_Admit_refused_parallel(b *testing.B) {
	logFile, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}, MaxInFlight: 1}, &fakeParser{}, &recordingPublisher{}, log)
	ctx := context.Background()
	release, _, ok := in.Admit(ctx, validRequest())
	if !ok {
		b.Fatal("the first request was refused")
	}
	defer release()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := validRequest()
		for pb.Next() {
			if _, res, ok := in.Admit(ctx, req); ok || res.Status != http.StatusServiceUnavailable {
				b.Errorf("admitted %v, status %d", ok, res.Status)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refusals/s")
}

func TestIntake_Screen_takes_no_place_so_a_body_still_arriving_holds_none(t *testing.T) {
	h := newHarness(t, webhook.Config{MaxInFlight: 1})
	for i := range 5 { // five callers whose bodies are still on the way
		if res, ok := h.in.Screen(context.Background(), validRequest()); !ok {
			t.Fatalf("caller %d screened out with %d while the place was free", i+1, res.Status)
		}
	}
	release, res, ok := h.in.Admit(context.Background(), validRequest())
	if !ok {
		t.Fatalf("a request whose body arrived was refused with %d", res.Status)
	}
	defer release()
	res, ok = h.in.Screen(context.Background(), validRequest())
	if ok || res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("with every place taken, Screen answered ok=%v %d %v", ok, res.Status, res.Header)
	}
}
