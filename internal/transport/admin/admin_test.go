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
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
)

const secretHeader = "x-dvrelay-secret"

// parkedQueue is a dead-letter queue double holding one dead letter, seq 7.
type parkedQueue struct {
	mu          sync.Mutex
	resubmitted []int64
	purged      []int64
	filters     []queue.DeadLetterFilter
}

func (q *parkedQueue) QueryDeadLetters(_ context.Context, f queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	q.mu.Lock()
	q.filters = append(q.filters, f)
	q.mu.Unlock()
	parked := queue.DeadLettered{
		Message: queue.Message{MessageID: "evt-1", Subject: "OpportunityUpdated", Body: []byte(`{"EventId":"evt-1"}`),
			ApplicationProperties: map[string]any{queue.PropEntity: "opportunity"}},
		SequenceNumber: 7, Reason: "PermanentFailure", Description: "credit-score: 400",
		DeliveryCount: 1, DeadLetteredAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if !f.Match(parked) || f.Max() < 1 {
		return nil, nil
	}
	return []queue.DeadLettered{parked}, nil
}

func (q *parkedQueue) History(_ context.Context, eventID string) ([]queue.Sighting, error) {
	return queue.History([]queue.Sighting{{MessageID: eventID + "/retry/2", State: queue.SeenDeadLettered, Seq: 7}}), nil
}

func (q *parkedQueue) Resubmit(_ context.Context, seq int64) (string, error) {
	if seq != 7 {
		return "", queue.ErrNotFound
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resubmitted = append(q.resubmitted, seq)
	return "evt-1/resubmit/1", nil
}

func (q *parkedQueue) PurgeDeadLetter(_ context.Context, seq int64) error {
	if seq != 7 {
		return queue.ErrNotFound
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.purged = append(q.purged, seq)
	return nil
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
		refusingParser{t}, nopPublisher{}, slog.New(slog.DiscardHandler)), 0))
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
	admin.NewServer(admin.Config{Backend: "embedded", Stats: func(context.Context) (queue.Stats, error) {
		return queue.Stats{Queued: 3, DeadLettered: 1}, nil
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

func TestClient_passes_the_filter_to_the_queue(t *testing.T) {
	adm, q := adminServer(t, []byte("s3cret"))
	c := admin.NewClient(strings.TrimPrefix(adm.URL, "http://"), secretHeader, "s3cret")
	since := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	want := queue.DeadLetterFilter{Reason: "PermanentFailure", Entity: "opportunity", EventID: "evt-1",
		Since: since, Before: before, AfterSeq: 3, Limit: 20}

	dead, err := c.QueryDeadLetters(context.Background(), want)
	if err != nil || len(dead) != 1 || dead[0].SequenceNumber != 7 {
		t.Fatalf("QueryDeadLetters = %+v, %v", dead, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.filters) != 1 || !reflect.DeepEqual(q.filters[0], want) {
		t.Errorf("the queue was asked %+v, want %+v", q.filters, want)
	}
}

func TestClient_shows_one_dead_letter_with_its_history_and_purges_it(t *testing.T) {
	adm, q := adminServer(t, []byte("s3cret"))
	c := admin.NewClient(strings.TrimPrefix(adm.URL, "http://"), secretHeader, "s3cret")
	ctx := context.Background()

	d, err := c.DeadLetter(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if d.SequenceNumber != 7 || d.EventID != "evt-1" || string(d.Body) != `{"EventId":"evt-1"}` {
		t.Errorf("dead letter = %+v", d.DeadLetter)
	}
	var ids []string
	for _, s := range d.History {
		ids = append(ids, s.MessageID+" "+s.State)
	}
	if want := []string{"evt-1 implied", "evt-1/retry/2 dead-lettered"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("history = %q, want %q", ids, want)
	}
	if err := c.Purge(ctx, 7); err != nil {
		t.Fatalf("purge 7: %v", err)
	}
	if !reflect.DeepEqual(q.purged, []int64{7}) {
		t.Errorf("the queue purged %v", q.purged)
	}
	for name, call := range map[string]func() error{
		"show":     func() error { _, err := c.DeadLetter(ctx, 8); return err },
		"purge":    func() error { return c.Purge(ctx, 8) },
		"resubmit": func() error { _, err := c.Resubmit(ctx, 8); return err },
	} {
		if err := call(); !errors.Is(err, queue.ErrNotFound) || !strings.Contains(err.Error(), "404") {
			t.Errorf("%s 8 = %v, want a 404 that is queue.ErrNotFound", name, err)
		}
	}
}

func TestServer_answers_problems_for_a_bad_query_and_a_wrong_secret_on_every_route(t *testing.T) {
	adm, q := adminServer(t, []byte("s3cret"))
	for _, tt := range []struct {
		method, path, secret string
		status               int
	}{
		{http.MethodGet, "/api/deadletters?since=yesterday", "s3cret", http.StatusBadRequest},
		{http.MethodGet, "/api/deadletters?limit=0", "s3cret", http.StatusBadRequest},
		{http.MethodGet, "/api/deadletters?after=-1", "s3cret", http.StatusBadRequest},
		{http.MethodGet, "/api/deadletters/x", "s3cret", http.StatusBadRequest},
		{http.MethodGet, "/api/deadletters/7", "wrong", http.StatusUnauthorized},
		{http.MethodPost, "/api/deadletters/7/purge", "wrong", http.StatusUnauthorized},
		{http.MethodPost, "/api/deadletters/7/resubmit", "wrong", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(tt.method, adm.URL+tt.path, nil)
		req.Header.Set(secretHeader, tt.secret)
		status, ctype, doc := answer(t, req)
		if status != tt.status || ctype != "application/problem+json" || doc["detail"] == "" {
			t.Errorf("%s %s: %d %q %v, want %d with a problem saying why", tt.method, tt.path, status, ctype, doc, tt.status)
		}
	}
	if len(q.purged)+len(q.resubmitted) != 0 {
		t.Errorf("refused requests changed the queue: purged %v, resubmitted %v", q.purged, q.resubmitted)
	}
}

func TestCause_drops_the_prefixes_that_say_where(t *testing.T) {
	for _, tt := range []struct{ description, step, want string }{
		{"step erp-sync: route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request", "erp-sync",
			"erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request"},
		{"attempt 13 of 13 failed: route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 503 Service Unavailable", "erp-sync",
			"erp-sync: POST ${DVRELAY_ERP_URL}: 503 Service Unavailable"},
		{"event: not a valid canonical event: /RecordId", "", "event: not a valid canonical event: /RecordId"},
		{"Message could not be consumed after 10 delivery attempts.", "", "Message could not be consumed after 10 delivery attempts."},
	} {
		if got := admin.Cause(tt.description, tt.step); got != tt.want {
			t.Errorf("Cause(%q) = %q, want %q", tt.description, got, tt.want)
		}
	}
}

func TestServer_health_answers_503_when_the_queue_cannot_be_read_in_time(t *testing.T) {
	mux := http.NewServeMux()
	// A stalled disk: the count never comes back before the health check gives up.
	stalled := func(ctx context.Context) (queue.Stats, error) {
		<-ctx.Done()
		return queue.Stats{}, ctx.Err()
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
	stuck := func(context.Context) (queue.Stats, error) {
		<-release
		return queue.Stats{}, nil
	}
	admin.NewServer(admin.Config{Backend: "embedded", Stats: stuck, HealthTimeout: 10 * time.Millisecond},
		slog.New(slog.DiscardHandler)).HealthRoute(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/health", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", rec.Code, rec.Body)
	}
}
