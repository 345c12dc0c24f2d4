package main

// A Dataverse service endpoint with contract Queue posts its RemoteExecutionContext straight to
// Service Bus. These tests deliver such messages to the real binary, through the Functions
// host's EventWorker route and through the embedded queue's consumer, and compare what the
// routes did with what they did for the same context posted to the intake.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

// contactFixture is a captured webhook body: an asynchronous Update of a contact.
var contactFixture = filepath.Join("..", "functions", "worker", "testdata", "dataverse", "docs-powerapps-update-contact-async.json")

// nativeRoutesFile sends contacts to the ERP and (a projection) to the credit API, and every
// event to the ERP.
func nativeRoutesFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routes.json")
	routes := `{"routes":[
  {"name":"contact-names","match":{"entity":"contact","messages":["Update"],"anyChanged":["firstname","lastname"]},
   "steps":[{"name":"credit","type":"http","url":"${DVRELAY_CREDIT_URL}","body":{"select":["EventId","RecordId","ChangedFields","Attributes.firstname"]}},
            {"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]},
  {"name":"every-event","steps":[{"name":"audit","type":"http","url":"${DVRELAY_ERP_URL}"}]}
]}`
	if err := os.WriteFile(path, []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bodyRecorder is a downstream double that keeps every body it received, by Idempotency-Key.
type bodyRecorder struct {
	mu    sync.Mutex
	calls map[string][]map[string]any
	srv   *httptest.Server
}

func newBodyRecorder(t *testing.T) *bodyRecorder {
	r := &bodyRecorder{calls: map[string][]map[string]any{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body map[string]any
		raw, _ := io.ReadAll(req.Body)
		_ = json.Unmarshal(raw, &body)
		r.mu.Lock()
		r.calls[req.Header.Get("Idempotency-Key")] = append(r.calls[req.Header.Get("Idempotency-Key")], body)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"score":640}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *bodyRecorder) bodies(key string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.calls[key]...)
}

func (r *bodyRecorder) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.calls {
		keys = append(keys, k)
	}
	return keys
}

// sameCalls checks that every call after the first (the intake's event, or Dataverse's message)
// carried the same event as the first, apart from how it arrived.
func sameCalls(t *testing.T, name string, calls []map[string]any, want int) {
	t.Helper()
	if len(calls) != want {
		t.Fatalf("%s received %d calls, want %d", name, len(calls), want)
	}
	strip := func(m map[string]any) map[string]any {
		c := map[string]any{}
		for k, v := range m {
			if k != "Source" && k != "CorrelationId" {
				c[k] = v
			}
		}
		return c
	}
	for i := 1; i < len(calls); i++ {
		if !reflect.DeepEqual(strip(calls[0]), strip(calls[i])) {
			t.Errorf("%s call %d differs:\n%v\nfirst:\n%v", name, i+1, calls[i], calls[0])
		}
	}
}

// dataverseInvocation is the host's Service Bus trigger invocation for a message Dataverse
// posted: binary (base64, dataType binary) or the default string form, which for a body that is
// not UTF-8 text carries U+FFFD where the bytes were.
func dataverseInvocation(body []byte, binary bool) []byte {
	var msg string
	if binary {
		msg = base64.StdEncoding.EncodeToString(body)
	} else {
		once, _ := json.Marshal(string(body))
		msg = string(once)
	}
	props := map[string]any{
		"http://schemas.microsoft.com/xrm/2011/Claims/Organization":      "contoso.crm.dynamics.com",
		"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "contact",
		"http://schemas.microsoft.com/xrm/2011/Claims/RequestName":       "Update",
	}
	b, _ := json.Marshal(map[string]any{
		"Data": map[string]any{"msg": msg},
		"Metadata": map[string]any{
			"DeliveryCount":         "1",
			"MessageId":             `"9f3e2d1c0b4a45d6a7b8c9d0e1f2a3b4"`,
			"SequenceNumber":        "3",
			"ApplicationProperties": props,
			"UserProperties":        props,
		},
	})
	return b
}

func nativeEnv(credit, erp *bodyRecorder, routes string, extra ...string) []string {
	return baseEnv(append([]string{
		"DVRELAY_CREDIT_URL=" + credit.srv.URL,
		"DVRELAY_ERP_URL=" + erp.srv.URL,
		"DVRELAY_ROUTES=" + routes,
		"DVRELAY_LOCK_DURATION=5s",
	}, extra...)...)
}

func TestCustomHandler_EventWorker_runs_a_context_Dataverse_queued_as_the_intake_runs_it(t *testing.T) {
	t.Parallel()
	credit, erp := newBodyRecorder(t), newBodyRecorder(t)
	addr := startCustomHandler(t, nativeEnv(credit, erp, nativeRoutesFile(t), "DVRELAY_DATA_DIR="+t.TempDir()))
	body, err := os.ReadFile(contactFixture)
	if err != nil {
		t.Fatal(err)
	}

	// The webhook path: the intake queues the event and the in-process consumer runs it.
	a := mustAccept(t, addr, body)
	eventually(t, "the intake's event through its routes", func() bool { return len(erp.bodies(a.EventID)) == 2 })

	for i, binary := range []bool{false, true} {
		r := invokeWorker(t, addr, dataverseInvocation(body, binary))
		if len(r.Logs) != 1 || !strings.HasPrefix(r.Logs[0], "complete: 3 steps, routes contact-names, every-event") {
			t.Errorf("binary=%v: Logs %q", binary, r.Logs)
		}
		sameCalls(t, "credit", credit.bodies(a.EventID), 2+i)
		sameCalls(t, "erp", erp.bodies(a.EventID), 4+2*i)
	}
	if got := erp.bodies(a.EventID)[2]["Source"]; got != "dataverse-servicebus" {
		t.Errorf("Source of Dataverse's message = %v", got)
	}

	// The shipped sample, the opportunity Update as the host hands it over with a JSON body.
	sample, err := os.ReadFile(filepath.Join("..", "samples", "servicebus", "opportunity-update-invocation.json"))
	if err != nil {
		t.Fatal(err)
	}
	opportunity, err := os.ReadFile(filepath.Join("..", "samples", "opportunity-update.json"))
	if err != nil {
		t.Fatal(err)
	}
	invokeWorker(t, addr, sample)
	b := mustAccept(t, addr, opportunity)
	eventually(t, "the sample through the audit route both ways", func() bool { return len(erp.bodies(b.EventID)) == 2 })
	sameCalls(t, "erp", erp.bodies(b.EventID), 2)
}

func TestCustomHandler_EventWorker_dead_letters_a_dotnet_binary_or_XML_context_at_once(t *testing.T) {
	t.Parallel()
	credit, erp := newBodyRecorder(t), newBodyRecorder(t)
	addr := startCustomHandler(t, nativeEnv(credit, erp, nativeRoutesFile(t), "DVRELAY_DATA_DIR="+t.TempDir()))
	bodies := [][]byte{[]byte(dotNetBinaryContext), []byte(xmlContext)}
	parked := 0
	for _, body := range bodies {
		for _, binary := range []bool{false, true} {
			r := invokeWorker(t, addr, dataverseInvocation(body, binary))
			if len(r.Logs) != 1 || !strings.HasPrefix(r.Logs[0], "dead-letter UnsupportedMessageFormat: ") ||
				!strings.Contains(r.Logs[0], "JSON (messageformat 2)") {
				t.Errorf("%.10q binary=%v: Logs %q", body, binary, r.Logs)
			}
			parked++
			if h := health(t, addr); h["deadLettered"] != float64(parked) || h["scheduled"] != float64(0) {
				t.Errorf("after %d: health %v", parked, h)
			}
		}
	}
	if keys := erp.keys(); len(keys) != 0 {
		t.Errorf("steps ran for %v", keys)
	}
}

// dotNetBinaryContext begins a RemoteExecutionContext as a service endpoint with messageformat 1
// (.NET Binary) posts it.
const dotNetBinaryContext = "\x40\x16RemoteExecutionContext\x08\x39http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk" +
	"\x09\x01i\x29http://www.w3.org/2001/XMLSchema-instance\x40\x0eBusinessUnitId\xad\x4a\xd3\x1f\x5f\x6b\x3c\xef\x11\xa6\x70\x00\x0d\x3a\x5c\x1e\x22\x01"

// xmlContext is a RemoteExecutionContext as a service endpoint with messageformat 3 (XML) posts it.
const xmlContext = `<RemoteExecutionContext xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">` +
	`<BusinessUnitId>5f2ad1a4-3c6b-ef11-a670-000d3a5c1e22</BusinessUnitId><MessageName>Update</MessageName></RemoteExecutionContext>`

func TestServe_runs_a_context_Dataverse_put_on_the_embedded_queue_as_the_intake_runs_it(t *testing.T) {
	t.Parallel()
	credit, erp := newBodyRecorder(t), newBodyRecorder(t)
	body, err := os.ReadFile(contactFixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	q, err := local.Open(context.Background(), dir, local.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims := func() map[string]any {
		return map[string]any{
			"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "contact",
			"http://schemas.microsoft.com/xrm/2011/Claims/RequestName":       "Update",
		}
	}
	for _, m := range []*queue.Message{
		{MessageID: "dv-json", Body: body, ApplicationProperties: claims()},
		{MessageID: "dv-binary", Body: []byte(dotNetBinaryContext), ApplicationProperties: claims()},
		{MessageID: "dv-xml", Body: []byte(xmlContext), ApplicationProperties: claims()},
	} {
		if err := q.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	p := startServe(t, dir, freeAddr(t), nativeEnv(credit, erp, nativeRoutesFile(t)))
	eventually(t, "the queue worked through", func() bool {
		h := health(t, p.addr)
		return h["queued"] == float64(0) && h["deadLettered"] == float64(2)
	})
	keys := erp.keys()
	if len(keys) != 1 {
		t.Fatalf("the ERP saw events %v, want the one context", keys)
	}

	// The same context through the intake: the same EventId, the same calls.
	a := mustAccept(t, p.addr, body)
	if a.EventID != keys[0] {
		t.Errorf("the intake gave EventId %s, the queued context ran as %s", a.EventID, keys[0])
	}
	eventually(t, "the intake's event through its routes", func() bool { return len(erp.bodies(a.EventID)) == 4 })
	sameCalls(t, "credit", credit.bodies(a.EventID), 2)
	sameCalls(t, "erp", erp.bodies(a.EventID), 4)

	resp, err := http.Get("http://" + p.addr + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		DeadLetters []struct {
			MessageID     string `json:"messageId"`
			Reason        string `json:"reason"`
			Description   string `json:"description"`
			DeliveryCount int    `json:"deliveryCount"`
		} `json:"deadLetters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.DeadLetters) != 2 {
		t.Fatalf("dead letters %+v", list.DeadLetters)
	}
	for _, d := range list.DeadLetters {
		if d.Reason != "UnsupportedMessageFormat" || d.DeliveryCount != 1 || !strings.Contains(d.Description, "JSON (messageformat 2)") {
			t.Errorf("dead letter %+v", d)
		}
	}
	if !bytes.Contains([]byte(p.out.String()), []byte(`"reason":"UnsupportedMessageFormat"`)) {
		t.Error("the log has no outcome line with the reason")
	}
}
