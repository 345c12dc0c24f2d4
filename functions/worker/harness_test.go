package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

const (
	eventID  = "5b1c7f0e-2d3a-4e5f-8a9b-0c1d2e3f4a5b"
	recordID = "0f9e3f2a-6b1c-4d3e-9a8b-7c6d5e4f3a2b"
	userID   = "11111111-2222-3333-4444-555555555555"
	workerID = "99999999-8888-7777-6666-555555555555"
	corrID   = "corr-42"
	// secretName is an attribute value that must never show up in a log line.
	secretName = "Project Bluebird for Contoso"
)

// reply is one scripted answer of a downstream double.
type reply struct {
	status     int
	retryAfter string
	body       string
}

// recorded is what a double received.
type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

// downstream is an ERP or credit API double. It answers from a script and behaves as an
// idempotent API would: the effect of a successful call is applied once per Idempotency-Key.
type downstream struct {
	mu       sync.Mutex
	requests []recorded
	applied  map[string]int // Idempotency-Key → successful calls
	script   func(n int) reply
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	d.requests = append(d.requests, recorded{r.Method, r.URL.Path, r.Header.Clone(), body})
	n := len(d.requests)
	rep := reply{status: http.StatusOK, body: `{"ok":true}`}
	if d.script != nil {
		rep = d.script(n)
	}
	if rep.status >= 200 && rep.status < 300 {
		if d.applied == nil {
			d.applied = make(map[string]int)
		}
		d.applied[r.Header.Get("Idempotency-Key")]++
	}
	d.mu.Unlock()
	if rep.retryAfter != "" {
		w.Header().Set("Retry-After", rep.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (d *downstream) calls() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorded(nil), d.requests...)
}

// webAPI is a Dataverse Web API double: EntityDefinitions metadata and PATCH on opportunities
// and accounts.
type webAPI struct {
	mu         sync.Mutex
	patches    []recorded
	patchReply func(n int) reply
}

func (a *webAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/data/v9.2/EntityDefinitions("):
		sets := map[string]string{"opportunity": "opportunities", "account": "accounts"}
		for logical, set := range sets {
			if strings.Contains(r.URL.Path, "'"+logical+"'") {
				fmt.Fprintf(w, `{"EntitySetName":%q}`, set)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"0x80040217","message":"no such entity"}}`)
	case r.Method == http.MethodPatch:
		a.mu.Lock()
		a.patches = append(a.patches, recorded{r.Method, r.URL.Path, r.Header.Clone(), body})
		n := len(a.patches)
		a.mu.Unlock()
		rep := reply{status: http.StatusNoContent}
		if a.patchReply != nil {
			rep = a.patchReply(n)
		}
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	default:
		w.WriteHeader(http.StatusTeapot)
	}
}

func (a *webAPI) calls() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recorded(nil), a.patches...)
}

type staticCredential struct{}

func (staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "static-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines, decoded.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	credit, erp *downstream
	dv          *webAPI
	dvURL       string
	settings    map[string]string
	logs        *syncBuffer
	now         time.Time
	cred        azcore.TokenCredential
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		credit: &downstream{script: func(int) reply { return reply{status: 200, body: `{"score": 712, "band": "B"}`} }},
		erp:    &downstream{},
		dv:     &webAPI{},
		logs:   &syncBuffer{},
		now:    time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC),
		cred:   staticCredential{},
	}
	creditSrv := httptest.NewServer(h.credit)
	erpSrv := httptest.NewServer(h.erp)
	dvSrv := httptest.NewServer(h.dv)
	t.Cleanup(func() { creditSrv.Close(); erpSrv.Close(); dvSrv.Close() })
	h.dvURL = dvSrv.URL
	h.settings = map[string]string{
		"DVRELAY_CREDIT_URL": creditSrv.URL + "/score?code=function-key-abc",
		"DVRELAY_ERP_URL":    erpSrv.URL + "/orders",
	}
	return h
}

// fastRetry keeps quick retries short so tests run in milliseconds.
var fastRetry = worker.RetryPolicy{QuickBase: 2 * time.Millisecond, QuickMaxWait: 50 * time.Millisecond}

func newDecoder(t testing.TB) worker.EventDecoder {
	t.Helper()
	p, err := event.NewParser()
	if err != nil {
		t.Fatalf("event.NewParser: %v", err)
	}
	return p
}

// worker builds a worker over the default routes.json, with cfg and deps adjusted by the caller.
func (h *harness) worker(t *testing.T, cfg worker.Config, adjust ...func(*worker.Deps)) *worker.Worker {
	t.Helper()
	if cfg.RoutesPath == "" {
		cfg.RoutesPath = "../../routes.json"
	}
	if cfg.Retry == (worker.RetryPolicy{}) {
		cfg.Retry = fastRetry
	}
	dv, err := dataverse.NewClient(h.dvURL, h.cred, nil)
	if err != nil {
		t.Fatalf("dataverse.NewClient: %v", err)
	}
	deps := worker.Deps{
		Settings:  func(k string) (string, bool) { v, ok := h.settings[k]; return v, ok },
		Dataverse: dv,
		Decoder:   newDecoder(t),
		Now:       func() time.Time { return h.now },
		Jitter:    func() float64 { return 0 },
	}
	for _, f := range adjust {
		f(&deps)
	}
	w, err := worker.New(cfg, deps, slog.New(slog.NewJSONHandler(h.logs, nil)))
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	return w
}

// opportunityEvent is a canonical opportunity Update with estimatedvalue changed.
func opportunityEvent(adjust ...func(map[string]any)) map[string]any {
	ev := map[string]any{
		"SchemaVersion": "1.0",
		"EventId":       eventID,
		"CorrelationId": corrID,
		"EventName":     "OpportunityUpdated",
		"Entity":        "opportunity",
		"Message":       "Update",
		"RecordId":      recordID,
		"ChangedFields": []string{"estimatedvalue", "name"},
		"Attributes": map[string]any{
			"estimatedvalue":  json.Number("15000.50"),
			"name":            secretName,
			"parentaccountid": map[string]any{"id": "22222222-3333-4444-5555-666666666666", "logicalName": "account", "name": "Contoso"},
		},
		"TriggeredBy": userID,
		"Timestamp":   "2026-11-25T05:59:58Z",
		"Source":      event.SourceWebhook,
	}
	for _, f := range adjust {
		f(ev)
	}
	return ev
}

func delivery(t testing.TB, ev map[string]any, attempt int) queue.Delivery {
	t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	d := queue.Delivery{
		MessageID:     eventID,
		CorrelationID: corrID,
		Subject:       "OpportunityUpdated",
		Body:          body,
		DeliveryCount: 1,
		ApplicationProperties: map[string]any{
			queue.PropEventName: "OpportunityUpdated",
		},
	}
	if attempt > 1 {
		d.MessageID = fmt.Sprintf("%s/retry/%d", eventID, attempt)
		d.ApplicationProperties[queue.PropAttempt] = int64(attempt)
	}
	return d
}
