package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dataverseDouble is the Dataverse Web API (EntityDefinitions and PATCH) plus the Functions
// managed identity endpoint, recording what the handler sent.
type dataverseDouble struct {
	mu       sync.Mutex
	patches  []patchCall
	tokenReq int
	srv      *httptest.Server
}

type patchCall struct {
	path, authorization, ifMatch, idempotencyKey string
	body                                         map[string]any
}

func newDataverseDouble(t *testing.T) *dataverseDouble {
	d := &dataverseDouble{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/msi/token":
			if r.Header.Get("X-IDENTITY-HEADER") != "identity-header" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			d.mu.Lock()
			d.tokenReq++
			d.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"access_token": "token-from-managed-identity",
				"expires_on":   strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
				"resource":     r.URL.Query().Get("resource"),
				"token_type":   "Bearer",
			})
		case r.Method == http.MethodGet && r.URL.Path == "/api/data/v9.2/EntityDefinitions(LogicalName='opportunity')":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"EntitySetName":"opportunities"}`)
		case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/api/data/v9.2/opportunities("):
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			d.mu.Lock()
			d.patches = append(d.patches, patchCall{
				path: r.URL.Path, authorization: r.Header.Get("Authorization"), ifMatch: r.Header.Get("If-Match"),
				idempotencyKey: r.Header.Get("Idempotency-Key"), body: body,
			})
			d.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":"0x80060888","message":"Resource not found"}}`)
		}
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *dataverseDouble) calls() ([]patchCall, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]patchCall(nil), d.patches...), d.tokenReq
}

// The acceptance run: custom handler mode, credit, ERP, Dataverse and the managed
// identity endpoint on local servers; one EventWorker invocation of an opportunity update.
func TestCustomHandler_EventWorker_scores_writes_back_and_syncs_an_opportunity(t *testing.T) {
	t.Parallel()
	credit, erp, dv := newDownstream(t, `{"score":712}`), newDownstream(t, `{"ok":true}`), newDataverseDouble(t)
	addr := startCustomHandler(t, flowEnv(credit, erp,
		"DVRELAY_DATA_DIR="+t.TempDir(),
		"DATAVERSE_URL="+dv.srv.URL,
		"IDENTITY_ENDPOINT="+dv.srv.URL+"/msi/token",
		"IDENTITY_HEADER=identity-header",
	))

	body, id := canonicalSample(t)
	var ev struct{ RecordID string }
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	invokeWorker(t, addr, serviceBusInvocation(body, false))

	if credit.count(id) != 1 || erp.count(id) != 1 {
		t.Errorf("credit %d, ERP %d calls with Idempotency-Key %s; want one each", credit.count(id), erp.count(id), id)
	}
	patches, tokens := dv.calls()
	if len(patches) != 1 {
		t.Fatalf("PATCHes = %+v, want one", patches)
	}
	p := patches[0]
	if want := "/api/data/v9.2/opportunities(" + ev.RecordID + ")"; p.path != want {
		t.Errorf("PATCH %s, want %s", p.path, want)
	}
	if p.authorization != "Bearer token-from-managed-identity" || p.ifMatch != "*" || p.idempotencyKey != id {
		t.Errorf("PATCH headers: Authorization %q, If-Match %q, Idempotency-Key %q", p.authorization, p.ifMatch, p.idempotencyKey)
	}
	if score, ok := p.body["new_creditscore"].(float64); !ok || score != 712 || len(p.body) != 1 {
		t.Errorf("PATCH body = %v, want only new_creditscore 712", p.body)
	}
	if tokens != 1 {
		t.Errorf("token requests = %d, want 1", tokens)
	}
}
