package dataverse_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/dvrelay/dvrelay/internal/dataverse"
)

// tracedClient is a client over the webAPI double that records the traceparent of every request.
func tracedClient(t *testing.T) (*dataverse.Client, func() []string) {
	t.Helper()
	api := &webAPI{t: t}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("traceparent"))
		mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := dataverse.NewClient(srv.URL, &staticCredential{}, &dataverse.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestClient_sends_the_traceparent_of_the_request_ids_on_every_Web_API_call(t *testing.T) {
	c, seen := tracedClient(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := dataverse.WithRequestIDs(context.Background(), dataverse.RequestIDs{IdempotencyKey: "evt-1", CorrelationID: "corr-1", Traceparent: tp})

	if err := c.Update(ctx, "opportunity", recordID, map[string]any{"new_creditscore": 712}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got := seen()
	if len(got) != 2 { // the entity set lookup, then the PATCH
		t.Fatalf("requests = %d, want 2", len(got))
	}
	for i, v := range got {
		if v != tp {
			t.Errorf("request %d traceparent = %q, want %q", i, v, tp)
		}
	}
}

func TestClient_sends_no_traceparent_without_one(t *testing.T) {
	c, seen := tracedClient(t)
	ctx := dataverse.WithRequestIDs(context.Background(), dataverse.RequestIDs{IdempotencyKey: "evt-1"})
	if err := c.Update(ctx, "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	for i, v := range seen() {
		if v != "" {
			t.Errorf("request %d sent traceparent %q without one", i, v)
		}
	}
}
