package admin_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

// stalledQueue is a dead-letter queue on a stalled disk: every call waits until the test ends,
// deaf to its context, as a read or write stuck in the kernel is.
type stalledQueue struct{ thaw chan struct{} }

func (q stalledQueue) QueryDeadLetters(context.Context, queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	<-q.thaw
	return nil, nil
}

func (q stalledQueue) History(context.Context, string) ([]queue.Sighting, error) {
	<-q.thaw
	return nil, nil
}

func (q stalledQueue) Resubmit(context.Context, int64) (string, error) {
	<-q.thaw
	return "", nil
}

func (q stalledQueue) PurgeDeadLetter(context.Context, int64) error {
	<-q.thaw
	return nil
}

func TestDeadLetterRoutes_answer_503_with_Retry_After_in_time_on_a_stalled_disk(t *testing.T) {
	q := stalledQueue{thaw: make(chan struct{})}
	defer close(q.thaw)
	mux := http.NewServeMux()
	admin.NewServer(admin.Config{Backend: "embedded", DeadLetters: q, DeadLetterTimeout: 50 * time.Millisecond},
		slog.New(slog.DiscardHandler)).DeadLetterRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, route := range []struct{ method, path string }{
		{http.MethodGet, "/api/deadletters"},
		{http.MethodGet, "/api/deadletters/7"},
		{http.MethodPost, "/api/deadletters/7/resubmit"},
		{http.MethodPost, "/api/deadletters/7/purge"},
	} {
		req, _ := http.NewRequest(route.method, srv.URL+route.path, nil)
		client := &http.Client{Timeout: 5 * time.Second} // far past the bound: a hang fails here
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", route.method, route.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d, Retry-After %q; want 503 with Retry-After", route.method, route.path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}

	// handler dlq says what happened.
	c := admin.NewClient(strings.TrimPrefix(srv.URL, "http://"), secretHeader, "")
	_, err := c.ListDeadLetters(context.Background(), 10)
	var se *admin.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("the client's error = %v, want a 503 saying the queue gave no answer in time", err)
	}
	_, err = c.Resubmit(context.Background(), 7)
	if err == nil || !strings.Contains(err.Error(), "may still happen") {
		t.Errorf("a resubmit without an answer: %v, want it to say the resubmit may still happen", err)
	}
}
