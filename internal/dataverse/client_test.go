package dataverse_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/dvrelay/dvrelay/internal/dataverse"
)

const recordID = "0f9e3f2a-6b1c-4d3e-9a8b-7c6d5e4f3a2b"

// staticCredential hands out one token and counts how often it was asked.
type staticCredential struct {
	calls  atomic.Int32
	scopes []string
	mu     sync.Mutex
}

func (s *staticCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.scopes = o.Scopes
	s.mu.Unlock()
	return azcore.AccessToken{Token: "tok-123", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// webAPI is a Dataverse Web API double that records what it received.
type webAPI struct {
	t          *testing.T
	mu         sync.Mutex
	metaCalls  int
	patches    []*http.Request
	bodies     []map[string]any
	patchReply func(w http.ResponseWriter)
}

func (d *webAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/data/v9.2/EntityDefinitions(LogicalName='opportunity')"):
		d.metaCalls++
		if r.URL.Query().Get("$select") != "EntitySetName" {
			d.t.Errorf("metadata query = %q, want $select=EntitySetName", r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"@odata.context":"x","EntitySetName":"opportunities","MetadataId":"y"}`)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/data/v9.2/EntityDefinitions("):
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"0x80040217","message":"Could not find an entity"}}`)
	case r.Method == http.MethodPatch:
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			d.t.Errorf("PATCH body: %v", err)
		}
		d.patches = append(d.patches, r)
		d.bodies = append(d.bodies, body)
		if d.patchReply != nil {
			d.patchReply(w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		d.t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	}
}

func newClient(t *testing.T, api *webAPI, cred azcore.TokenCredential) *dataverse.Client {
	t.Helper()
	api.t = t
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := dataverse.NewClient(srv.URL, cred, &dataverse.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func TestClient_Update_patches_the_record_with_if_match_and_odata_headers(t *testing.T) {
	api := &webAPI{}
	cred := &staticCredential{}
	c := newClient(t, api, cred)
	ctx := dataverse.WithRequestIDs(context.Background(), dataverse.RequestIDs{IdempotencyKey: "evt-1", CorrelationID: "corr-1"})

	if err := c.Update(ctx, "opportunity", strings.ToUpper(recordID), map[string]any{"new_creditscore": 712}); err != nil {
		t.Fatalf("Update: %v", err)
	}

	if len(api.patches) != 1 {
		t.Fatalf("PATCH count = %d, want 1", len(api.patches))
	}
	r := api.patches[0]
	if want := "/api/data/v9.2/opportunities(" + recordID + ")"; r.URL.Path != want {
		t.Errorf("path = %q, want %q", r.URL.Path, want)
	}
	for h, want := range map[string]string{
		"Authorization":    "Bearer tok-123",
		"If-Match":         "*",
		"OData-MaxVersion": "4.0",
		"OData-Version":    "4.0",
		"Accept":           "application/json",
		"Content-Type":     "application/json",
		"Idempotency-Key":  "evt-1",
		"X-Correlation-ID": "corr-1",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if got := api.bodies[0]["new_creditscore"]; got != float64(712) {
		t.Errorf("body new_creditscore = %v, want 712", got)
	}
	if want := "http://" + r.Host + "/.default"; len(cred.scopes) != 1 || cred.scopes[0] != want {
		t.Errorf("token scopes = %v, want [%s]", cred.scopes, want)
	}
}

func TestClient_looks_up_the_entity_set_once_and_reuses_the_token(t *testing.T) {
	api := &webAPI{}
	cred := &staticCredential{}
	c := newClient(t, api, cred)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	// Concurrent first calls may race to the metadata endpoint; later calls must not.
	first := api.metaCalls
	if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if api.metaCalls != first || first < 1 || first > 8 {
		t.Errorf("metadata calls = %d then %d, want the later update to use the cache", first, api.metaCalls)
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("token requests = %d, want 1 (token cached until near expiry)", n)
	}
}

func TestClient_Update_returns_a_typed_error(t *testing.T) {
	tests := []struct {
		name       string
		reply      func(w http.ResponseWriter)
		wantStatus int
		wantCode   string
		wantAfter  time.Duration
	}{
		{
			name: "429 service protection with Retry-After seconds",
			reply: func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "17")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = io.WriteString(w, `{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}`)
			},
			wantStatus: 429, wantCode: "0x80072322", wantAfter: 17 * time.Second,
		},
		{
			name: "404 record deleted",
			reply: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"error":{"code":"0x80040217","message":"opportunity With Id = x Does Not Exist"}}`)
			},
			wantStatus: 404, wantCode: "0x80040217",
		},
		{
			name: "502 from a proxy with no OData body",
			reply: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, `<html>bad gateway</html>`)
			},
			wantStatus: 502,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &webAPI{patchReply: tt.reply}
			c := newClient(t, api, &staticCredential{})
			err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"})
			var dvErr *dataverse.Error
			if !errors.As(err, &dvErr) {
				t.Fatalf("error = %v, want *dataverse.Error", err)
			}
			if dvErr.Status != tt.wantStatus || dvErr.Code != tt.wantCode || dvErr.RetryAfter != tt.wantAfter {
				t.Errorf("got {%d %q %v}, want {%d %q %v}", dvErr.Status, dvErr.Code, dvErr.RetryAfter, tt.wantStatus, tt.wantCode, tt.wantAfter)
			}
			if strings.Contains(err.Error(), "Does Not Exist") {
				t.Errorf("error text %q carries the server message, which may quote values", err)
			}
		})
	}
}

func TestClient_Update_of_an_unknown_entity_fails_with_404(t *testing.T) {
	api := &webAPI{}
	c := newClient(t, api, &staticCredential{})
	err := c.Update(context.Background(), "new_nothing", recordID, map[string]any{"name": "x"})
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusNotFound {
		t.Fatalf("error = %v, want a 404 *dataverse.Error", err)
	}
	if len(api.patches) != 0 {
		t.Errorf("PATCH sent for an unknown entity")
	}
}

func TestClient_Update_rejects_bad_input_before_sending_as_ErrInvalidInput(t *testing.T) {
	tests := []struct {
		name, entity, id string
		columns          map[string]any
	}{
		{"id not a GUID", "opportunity", "12; DROP", map[string]any{"a": 1}},
		{"entity not a logical name", "opportunity')/x", recordID, map[string]any{"a": 1}},
		{"no columns", "opportunity", recordID, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &webAPI{}
			c := newClient(t, api, &staticCredential{})
			err := c.Update(context.Background(), tt.entity, tt.id, tt.columns)
			if !errors.Is(err, dataverse.ErrInvalidInput) {
				t.Fatalf("Update error = %v, want dataverse.ErrInvalidInput", err)
			}
			if strings.Contains(err.Error(), "DROP") {
				t.Errorf("error %q quotes the record id it was given", err)
			}
			if len(api.patches) != 0 || api.metaCalls != 0 {
				t.Errorf("requests were sent for invalid input")
			}
		})
	}
}

func TestClient_fetches_a_new_token_after_a_401(t *testing.T) {
	api := &webAPI{}
	first := true
	api.patchReply = func(w http.ResponseWriter) {
		if first {
			first = false
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"0x80072560","message":"ExpiredAuthTicket"}}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	cred := &staticCredential{}
	c := newClient(t, api, cred)

	err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"})
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusUnauthorized {
		t.Fatalf("first Update error = %v, want a 401 *dataverse.Error", err)
	}
	if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
		t.Fatalf("second Update: %v", err)
	}
	if n := cred.calls.Load(); n != 2 {
		t.Errorf("token requests = %d, want 2 (the token was dropped after the 401)", n)
	}
}

// blockingCredential holds every token request until release is closed.
type blockingCredential struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingCredential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	b.once.Do(func() { close(b.started) })
	select {
	case <-b.release:
		return azcore.AccessToken{Token: "tok-slow", ExpiresOn: time.Now().Add(time.Hour)}, nil
	case <-ctx.Done():
		return azcore.AccessToken{}, ctx.Err()
	}
}

// The bearer policy serialises refreshes: callers behind one wait for its answer rather than
// their own deadline, so what bounds them is the deadline of the call that asks (a step try's
// timeout in the worker), after which they ask in turn under their own.
func TestClient_callers_behind_a_slow_token_request_wait_no_longer_than_its_deadline(t *testing.T) {
	api := &webAPI{}
	cred := &blockingCredential{started: make(chan struct{}), release: make(chan struct{})}
	c := newClient(t, api, cred)
	defer close(cred.release)

	// One update is stuck fetching a token (a slow identity endpoint) under a try's deadline.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = c.Update(ctx, "opportunity", recordID, map[string]any{"name": "x"})
	}()
	<-cred.started

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Update(ctx, "opportunity", recordID, map[string]any{"name": "x"}) }()

	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Update error = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update still waiting long after the token request it queued behind gave up")
	}
	if len(api.patches) != 0 {
		t.Errorf("%d PATCHes sent without a token", len(api.patches))
	}
}
