package dataverse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// elsewhere is a server on another port that a redirect points at; it records every request.
type elsewhere struct {
	mu       sync.Mutex
	requests []*http.Request
}

func (e *elsewhere) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.requests = append(e.requests, r)
	e.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (e *elsewhere) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.requests)
}

func TestClient_refuses_a_redirect_and_sends_nothing_to_its_target(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			other := &elsewhere{}
			otherSrv := httptest.NewServer(other)
			defer otherSrv.Close()
			target := otherSrv.URL + "/api/data/v9.2/opportunities(" + recordID + ")"
			dv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					_, _ = io.WriteString(w, `{"EntitySetName":"opportunities"}`)
					return
				}
				w.Header().Set("Location", target)
				w.WriteHeader(status)
			}))
			defer dv.Close()
			// The production client: no HTTPClient given.
			c, err := dataverse.NewClient(dv.URL, &staticCredential{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := dataverse.WithRequestIDs(context.Background(), dataverse.RequestIDs{IdempotencyKey: "evt-1", CorrelationID: "corr-1"})

			err = c.Update(ctx, "opportunity", recordID, map[string]any{"new_creditscore": 712})

			var redirect *outbound.RedirectError
			if !errors.As(err, &redirect) {
				t.Fatalf("Update error = %v, want an *outbound.RedirectError", err)
			}
			if redirect.Status != status || redirect.Location != target {
				t.Errorf("redirect = %+v, want status %d to %s", redirect, status, target)
			}
			if msg := err.Error(); !strings.Contains(msg, target) || !strings.Contains(msg, http.StatusText(status)) {
				t.Errorf("error %q does not name the status and the Location", msg)
			}
			if n := other.count(); n != 0 {
				t.Errorf("the redirect target got %d requests (token, Idempotency-Key and body sent to another host), want none", n)
			}
		})
	}
}
