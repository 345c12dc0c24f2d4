package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/admin"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/httpauth"
	"github.com/dvrelay/dvrelay/internal/httpintake"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

const secretHeader = "x-dvrelay-secret"

// parkedQueue is a dead-letter queue double holding one dead letter, seq 7.
type parkedQueue struct {
	mu          sync.Mutex
	resubmitted []int64
}

func (q *parkedQueue) ListDeadLetters(_ context.Context, limit int) ([]queue.DeadLettered, error) {
	return []queue.DeadLettered{{
		Message:        queue.Message{MessageID: "evt-1", Subject: "OpportunityUpdated", Body: []byte(`{"EventId":"evt-1"}`)},
		SequenceNumber: 7, Reason: "PermanentFailure", Description: "credit-score: 400",
		DeliveryCount: 1, DeadLetteredAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}}[:min(limit, 1)], nil
}

func (q *parkedQueue) Resubmit(_ context.Context, seq int64) (string, error) {
	if seq != 7 {
		return "", local.ErrNotFound
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resubmitted = append(q.resubmitted, seq)
	return "evt-1/resubmit/1", nil
}

func adminServer(t *testing.T, secrets ...[]byte) (*httptest.Server, *parkedQueue) {
	t.Helper()
	q := &parkedQueue{}
	mux := http.NewServeMux()
	s := admin.NewServer(admin.Config{Backend: "embedded", DeadLetters: q, Auth: httpauth.New(secretHeader, secrets...)}, slog.New(slog.DiscardHandler))
	s.HealthRoute(mux)
	s.DeadLetterRoutes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, q
}

// refusingParser fails the test if the intake gets as far as parsing.
type refusingParser struct{ t *testing.T }

func (p refusingParser) Parse([]byte, event.Hints) (event.Event, error) {
	p.t.Error("the intake parsed a request it should have refused")
	return event.Event{}, errors.New("not reached")
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, *queue.Message) error { return nil }

// answer sends req and returns its status, Content-Type and decoded problem.
func answer(t *testing.T, req *http.Request) (int, string, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), doc
}

func TestServer_refuses_a_wrong_secret_with_the_intakes_problem(t *testing.T) {
	secret := []byte("s3cret")
	adm, _ := adminServer(t, secret)
	intake := httptest.NewServer(httpintake.Forwarded(webhook.New(webhook.Config{Secrets: [][]byte{secret}, SecretHeader: secretHeader},
		refusingParser{t}, nopPublisher{}, slog.New(slog.DiscardHandler))))
	t.Cleanup(intake.Close)

	intakeReq, _ := http.NewRequest(http.MethodPost, intake.URL, strings.NewReader(`{}`))
	intakeReq.Header.Set("Content-Type", "application/json")
	intakeReq.Header.Set(secretHeader, "wrong")
	adminReq, _ := http.NewRequest(http.MethodGet, adm.URL+"/api/deadletters", nil)
	adminReq.Header.Set(secretHeader, "wrong")

	wantStatus, wantType, want := answer(t, intakeReq)
	gotStatus, gotType, got := answer(t, adminReq)
	delete(want, "correlationId") // the intake's own: every intake answer carries one
	if gotStatus != http.StatusUnauthorized || gotStatus != wantStatus || gotType != wantType {
		t.Errorf("admin: %d %q; intake: %d %q", gotStatus, gotType, wantStatus, wantType)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("admin problem %v, intake problem %v", got, want)
	}
}

func TestServer_accepts_every_rotated_secret(t *testing.T) {
	adm, _ := adminServer(t, []byte("old"), []byte("new"))
	for _, secret := range []string{"old", "new"} {
		dead, err := admin.NewClient(strings.TrimPrefix(adm.URL, "http://"), secretHeader, secret).ListDeadLetters(context.Background(), 10)
		if err != nil || len(dead) != 1 {
			t.Errorf("secret %q: %v, %v", secret, dead, err)
		}
	}
}

func TestClient_lists_and_resubmits_through_the_server(t *testing.T) {
	adm, q := adminServer(t, []byte("s3cret"))
	c := admin.NewClient(strings.TrimPrefix(adm.URL, "http://"), secretHeader, "s3cret")
	ctx := context.Background()

	dead, err := c.ListDeadLetters(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].SequenceNumber != 7 || dead[0].Reason != "PermanentFailure" || string(dead[0].Body) != `{"EventId":"evt-1"}` {
		t.Errorf("dead letters = %+v", dead)
	}
	id, err := c.Resubmit(ctx, 7)
	if err != nil || id != "evt-1/resubmit/1" {
		t.Errorf("resubmit 7 = %q, %v", id, err)
	}
	if len(q.resubmitted) != 1 {
		t.Errorf("the queue resubmitted %v", q.resubmitted)
	}
	if _, err := c.Resubmit(ctx, 8); err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no dead-lettered message has sequence number 8") {
		t.Errorf("resubmit 8 = %v, want a 404 naming the sequence number", err)
	}
}

func TestClient_refuses_a_redirect_and_sends_nothing_to_its_target(t *testing.T) {
	var mu sync.Mutex
	var reached []http.Header
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Header.Clone())
		mu.Unlock()
		_, _ = io.WriteString(w, `{"deadLetters":[]}`)
	}))
	t.Cleanup(elsewhere.Close)
	target := elsewhere.URL + "/api/deadletters"
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirecting.Close)

	c := admin.NewClient(strings.TrimPrefix(redirecting.URL, "http://"), secretHeader, "s3cret")
	_, err := c.ListDeadLetters(context.Background(), 10)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("err = %v, want one naming the redirect's Location %s", err, target)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reached) != 0 {
		t.Errorf("the redirect target was called %d times, with headers %v", len(reached), reached)
	}
}

func TestServer_health_shows_the_backend_and_its_counts(t *testing.T) {
	mux := http.NewServeMux()
	admin.NewServer(admin.Config{Backend: "embedded", Stats: func(context.Context) (local.Stats, error) {
		return local.Stats{Queued: 3, DeadLettered: 1}, nil
	}}, slog.New(slog.DiscardHandler)).HealthRoute(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health", nil))
	var h map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || h["backend"] != "embedded" || h["queued"] != float64(3) || h["deadLettered"] != float64(1) {
		t.Errorf("%d %v", rec.Code, h)
	}
}

func TestServer_health_answers_503_when_the_queue_cannot_be_read_in_time(t *testing.T) {
	mux := http.NewServeMux()
	// A stalled disk: the count never comes back before the health check gives up.
	stalled := func(ctx context.Context) (local.Stats, error) {
		<-ctx.Done()
		return local.Stats{}, ctx.Err()
	}
	admin.NewServer(admin.Config{Backend: "embedded", Stats: stalled, HealthTimeout: 10 * time.Millisecond},
		slog.New(slog.DiscardHandler)).HealthRoute(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var p map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p["status"] != float64(http.StatusServiceUnavailable) {
		t.Errorf("problem %s (%v)", rec.Body, err)
	}
}

func TestServer_health_answers_in_time_even_when_the_queue_ignores_its_context(t *testing.T) {
	mux := http.NewServeMux()
	release := make(chan struct{})
	defer close(release)
	// A read stuck in a system call does not look at its context; the probe must not wait for it.
	stuck := func(context.Context) (local.Stats, error) {
		<-release
		return local.Stats{}, nil
	}
	admin.NewServer(admin.Config{Backend: "embedded", Stats: stuck, HealthTimeout: 10 * time.Millisecond},
		slog.New(slog.DiscardHandler)).HealthRoute(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", rec.Code, rec.Body)
	}
}
