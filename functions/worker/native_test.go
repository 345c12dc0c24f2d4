package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// claim is the prefix of the application properties Dataverse sets on what it posts to Service Bus.
const claim = "http://schemas.microsoft.com/xrm/2011/Claims/"

// nativeRoutes send every event to the ERP and some, by table, to the credit API with a
// projection, so that both the whole event and $event paths are compared.
const nativeRoutes = `{"routes":[
  {"name":"every-event","steps":[{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]},
  {"name":"contact-names","match":{"entity":"contact","messages":["Update"],"anyChanged":["firstname","lastname"]},
   "steps":[{"name":"credit","type":"http","url":"${DVRELAY_CREDIT_URL}",
             "body":{"select":["EventId","Entity","RecordId","ChangedFields","Attributes.firstname","Attributes.lastname"]}},
            {"name":"log","type":"log"}]},
  {"name":"new-accounts","match":{"entity":"account","messages":["Create"]},
   "steps":[{"name":"credit","type":"http","url":"${DVRELAY_CREDIT_URL}","body":{"select":["EventId","RecordId","Attributes"]}}]},
  {"name":"activities","match":{"entity":"new_customactivity"},
   "steps":[{"name":"credit","type":"http","url":"${DVRELAY_CREDIT_URL}","body":{"select":["RecordId","Attributes.to","Attributes.from"]}}]},
  {"name":"opportunities-only","match":{"entity":"opportunity"},"steps":[{"name":"log","type":"log"}]}
]}`

// captured is a publisher that keeps what the intake queues.
type captured struct {
	mu   sync.Mutex
	msgs []*queue.Message
}

func (c *captured) Publish(_ context.Context, m *queue.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	return nil
}

// viaIntake posts body to the webhook intake as Dataverse would and returns the delivery of the
// message it queued, as the worker receives it.
func viaIntake(t *testing.T, body []byte) queue.Delivery {
	t.Helper()
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	pub := &captured{}
	in := webhook.New(webhook.Config{}, p, pub, slog.New(slog.DiscardHandler))
	resp := in.Handle(context.Background(), webhook.Request{
		Method: http.MethodPost, Header: http.Header{"Content-Type": {"application/json"}},
		Body: body, ContentLength: int64(len(body)),
	})
	if resp.Status != http.StatusAccepted || len(pub.msgs) != 1 {
		t.Fatalf("intake answered %d %s, queued %d", resp.Status, resp.Body, len(pub.msgs))
	}
	m := pub.msgs[0]
	return queue.Delivery{MessageID: m.MessageID, CorrelationID: m.CorrelationID, Subject: m.Subject,
		Body: m.Body, DeliveryCount: 1, ApplicationProperties: m.ApplicationProperties}
}

// fromDataverse is the delivery of body as a Dataverse service endpoint (message format JSON)
// posts it to a queue: its own MessageId, no CorrelationId, the claim properties.
func fromDataverse(t *testing.T, body []byte, adjust ...func(*queue.Delivery)) queue.Delivery {
	t.Helper()
	var ctx struct {
		OrganizationId, UserId, InitiatingUserId, PrimaryEntityName, MessageName string
	}
	_ = json.Unmarshal(body, &ctx)
	d := queue.Delivery{
		MessageID:     "0c2b0f4e6d8a4f0b9a3c5e7d1f2a4b6c",
		Body:          body,
		DeliveryCount: 1,
		EnqueuedTime:  time.Date(2026, 11, 25, 5, 59, 59, 0, time.UTC),
		ApplicationProperties: map[string]any{
			claim + "Organization":      ctx.OrganizationId,
			claim + "User":              ctx.UserId,
			claim + "InitiatingUser":    ctx.InitiatingUserId,
			claim + "EntityLogicalName": ctx.PrimaryEntityName,
			claim + "RequestName":       ctx.MessageName,
		},
	}
	for _, f := range adjust {
		f(&d)
	}
	return d
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sent is one downstream call as the comparison sees it: where it went, under which key, and its
// JSON body without the two members that say how the event arrived.
type sent struct {
	Path, IdempotencyKey string
	Body                 map[string]any
}

func sentSince(t *testing.T, calls []recorded, from int) []sent {
	t.Helper()
	var out []sent
	for _, c := range calls[from:] {
		dec := json.NewDecoder(bytes.NewReader(c.body))
		dec.UseNumber()
		var body map[string]any
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("%s body is not JSON: %s", c.path, c.body)
		}
		delete(body, "Source")
		delete(body, "CorrelationId")
		out = append(out, sent{c.path, c.header.Get("Idempotency-Key"), body})
	}
	return out
}

func TestWorker_runs_a_context_Dataverse_queued_through_the_same_routes_as_the_intakes_event(t *testing.T) {
	cases := []struct{ payload, routes string }{
		{"testdata/dataverse/docs-powerapps-update-contact-async.json", ""},
		{"testdata/dataverse/albanianxrm-create-account-sync.json", ""},
		{"testdata/dataverse/albanianxrm-update-new_customactivity-async.json", ""},
		// The shipped routes: credit score, write-back to Dataverse, ERP, log.
		{"../../samples/opportunity-update.json", "../../routes.json"},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.payload), func(t *testing.T) {
			h := newHarness(t)
			routes := c.routes
			if routes == "" {
				routes = writeRoutes(t, nativeRoutes)
			}
			w := h.worker(t, worker.Config{RoutesPath: routes})
			body := readFile(t, c.payload)

			viaQueue := w.Process(context.Background(), viaIntake(t, body))
			credit, erp, patches := len(h.credit.calls()), len(h.erp.calls()), len(h.dv.calls())
			native := w.Process(context.Background(), fromDataverse(t, body))

			if viaQueue.Kind != queue.Complete || native.Kind != queue.Complete {
				t.Fatalf("outcomes: intake's event %q, Dataverse's message %q", viaQueue.Summary, native.Summary)
			}
			if native.Summary != viaQueue.Summary || !strings.Contains(native.Summary, "routes") {
				t.Errorf("Dataverse's message: %q\nthe intake's event: %q", native.Summary, viaQueue.Summary)
			}
			for _, d := range []struct {
				name  string
				calls []recorded
				from  int
			}{{"credit", h.credit.calls(), credit}, {"erp", h.erp.calls(), erp}, {"dataverse", h.dv.calls(), patches}} {
				first, second := sentSince(t, d.calls[:d.from], 0), sentSince(t, d.calls, d.from)
				if !reflect.DeepEqual(first, second) {
					t.Errorf("%s received\n%v\nfor Dataverse's message, and\n%v\nfor the intake's event", d.name, second, first)
				}
			}
			if len(h.erp.calls()) != 2*erp || erp == 0 {
				t.Errorf("the ERP saw %d calls, want %d for each delivery", len(h.erp.calls()), erp)
			}
		})
	}
}

func TestWorker_gives_a_context_Dataverse_queued_the_EventId_the_intake_gives_it(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
	for _, name := range []string{"docs-powerapps-update-contact-async", "albanianxrm-create-account-sync", "albanianxrm-update-new_customactivity-async"} {
		body := readFile(t, "testdata/dataverse/"+name+".json")
		intake := viaIntake(t, body)
		for _, form := range []struct {
			name string
			d    queue.Delivery
		}{
			{"with the claim properties", fromDataverse(t, body)},
			{"without properties", fromDataverse(t, body, func(d *queue.Delivery) { d.ApplicationProperties = nil })},
			{"redelivered", fromDataverse(t, body, func(d *queue.Delivery) { d.DeliveryCount, d.EnqueuedTime = 4, d.EnqueuedTime.Add(time.Hour) })},
		} {
			if out := w.Process(context.Background(), form.d); out.EventID != intake.MessageID {
				t.Errorf("%s %s: EventId %q, the intake queued %q", name, form.name, out.EventID, intake.MessageID)
			}
		}
	}
}

func TestWorker_marks_a_context_Dataverse_queued_with_its_source_and_correlation(t *testing.T) {
	body := readFile(t, "testdata/dataverse/docs-powerapps-update-contact-async.json")
	const contextCorrelation = "b374239d-4233-41a9-8b17-a86cb4f737b5" // the fixture's CorrelationId
	cases := []struct {
		name, messageCorrelation, want string
	}{
		{"the message's correlation id wins", "req-7d1e", "req-7d1e"},
		{"else the context's", "", contextCorrelation},
		{"an unusable one is not carried on", "two words\r\nX-Injected: yes", contextCorrelation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
			out := w.Process(context.Background(), fromDataverse(t, body, func(d *queue.Delivery) { d.CorrelationID = c.messageCorrelation }))
			if out.Kind != queue.Complete {
				t.Fatalf("outcome %s", out.Summary)
			}
			calls := h.erp.calls()
			if len(calls) != 1 {
				t.Fatalf("ERP calls = %d", len(calls))
			}
			if got := calls[0].header.Get("X-Correlation-ID"); got != c.want {
				t.Errorf("X-Correlation-ID = %q, want %q", got, c.want)
			}
			var ev event.Event
			if err := json.Unmarshal(calls[0].body, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Source != event.SourceServiceBus || ev.CorrelationID != c.want {
				t.Errorf("the ERP got Source %q, CorrelationId %q", ev.Source, ev.CorrelationID)
			}
			for _, line := range h.logs.lines(t) {
				if line["msg"] == "outcome" && line["correlationId"] != c.want {
					t.Errorf("outcome logged with correlationId %v, want %q", line["correlationId"], c.want)
				}
			}
		})
	}
}

func TestWorker_keeps_and_routes_a_context_Dataverse_trimmed(t *testing.T) {
	// Above 192 KB Dataverse drops InputParameters and the images and sets MessageMaxSizeExceeded.
	body := readFile(t, "../../samples/size-exceeded.json")
	for _, props := range []map[string]any{
		{propTrimmed: true, claim + "RequestName": "Update"},
		{propTrimmed: "True"},
		nil, // the missing InputParameters say it as well
	} {
		h := newHarness(t)
		w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
		out := w.Process(context.Background(), fromDataverse(t, body, func(d *queue.Delivery) { d.ApplicationProperties = props }))
		if out.Kind != queue.Complete || !strings.Contains(out.Summary, "opportunities-only") {
			t.Errorf("props %v: outcome %q, want the routes run", props, out.Summary)
		}
		calls := h.erp.calls()
		if len(calls) != 1 {
			t.Fatalf("props %v: ERP calls = %d, want 1", props, len(calls))
		}
		var ev event.Event
		if err := json.Unmarshal(calls[0].body, &ev); err != nil {
			t.Fatal(err)
		}
		if !ev.Trimmed || ev.EventName != "OpportunityUpdated" || ev.RecordID == "" {
			t.Errorf("props %v: the ERP got %+v", props, ev)
		}
		if !strings.Contains(h.logs.String(), "event arrived trimmed") {
			t.Errorf("props %v: no warning that the event arrived trimmed", props)
		}
	}
}

func TestWorker_runs_a_context_Dataverse_queued_without_users_or_organization(t *testing.T) {
	// Such a context used to be dead-lettered as invalid on its first delivery.
	var ctx map[string]any
	if err := json.Unmarshal(readFile(t, "testdata/dataverse/docs-powerapps-update-contact-async.json"), &ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"UserId", "InitiatingUserId", "OrganizationId"} {
		delete(ctx, name)
	}
	ctx["CorrelationId"] = map[string]any{"__type": "Guid:#System", "__value": ctx["CorrelationId"]}
	body, err := json.Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})

	out := w.Process(context.Background(), fromDataverse(t, body))

	if out.Kind != queue.Complete || !strings.Contains(out.Summary, "contact-names") {
		t.Fatalf("outcome %s %q, want the contact routes run", out.Kind, out.Summary)
	}
	calls := h.erp.calls()
	if len(calls) != 1 || calls[0].header.Get("X-Correlation-ID") != "b374239d-4233-41a9-8b17-a86cb4f737b5" {
		t.Fatalf("ERP calls = %d (%v), want one under the context's unwrapped correlation id", len(calls), calls)
	}
}

const propTrimmed = "MessageMaxSizeExceeded"

// dotNetBinary is how the DataContract serializer's binary XML writer begins a
// RemoteExecutionContext ([MC-NBFX]: a short element record, then xmlns records).
var dotNetBinary = append([]byte("\x40\x16RemoteExecutionContext\x08\x38http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk"+
	"\x09\x01i\x29http://www.w3.org/2001/XMLSchema-instance\x40\x0eBusinessUnitId\x99\x24"),
	[]byte("4af10637-4ea2-e711-8122-000d3aa2331c\x01\xff\xfe")...)

const dataContractXML = `<?xml version="1.0" encoding="utf-8"?><RemoteExecutionContext xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk" ` +
	`xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><BusinessUnitId>4af10637-4ea2-e711-8122-000d3aa2331c</BusinessUnitId>` +
	`<MessageName>Update</MessageName></RemoteExecutionContext>`

func TestWorker_dead_letters_a_dotnet_binary_or_XML_context_on_its_first_delivery(t *testing.T) {
	cases := []struct {
		name, format string
		body         []byte
	}{
		{".NET Binary", ".NET Binary", dotNetBinary},
		{".NET Binary read by the host as a UTF-8 string", ".NET Binary", []byte(strings.ToValidUTF8(string(dotNetBinary), "\uFFFD"))},
		{"XML", "XML", []byte(dataContractXML)},
		{"XML with a byte order mark", "XML", []byte("\uFEFF" + dataContractXML)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
			r := &fakeRerouter{}
			d := fromDataverse(t, c.body, func(d *queue.Delivery) {
				d.ApplicationProperties = map[string]any{claim + "EntityLogicalName": "contact", claim + "RequestName": "Update"}
			})
			out, err := handleTriggered(context.Background(), w, d, r)
			if err != nil {
				t.Fatal(err)
			}
			if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonUnsupportedMessageFormat {
				t.Fatalf("outcome %v %q (%s), want dead-letter UnsupportedMessageFormat", out.Kind, out.Reason, out.Summary)
			}
			for _, want := range []string{c.format, "JSON (messageformat 2)"} {
				if !strings.Contains(out.Description, want) {
					t.Errorf("description %q does not say %q", out.Description, want)
				}
			}
			if len(r.parked) != 1 || len(r.published) != 0 {
				t.Fatalf("parked %d, scheduled %d: want one dead letter and no retry", len(r.parked), len(r.published))
			}
			p := r.parked[0]
			if p.reason != queue.ReasonUnsupportedMessageFormat || !bytes.Equal(p.msg.Body, c.body) {
				t.Errorf("dead letter %q with body %q, want the reason and the body as received", p.reason, p.msg.Body)
			}
			if len(h.erp.calls()) != 0 {
				t.Error("a step ran")
			}
		})
	}
}

func TestWorker_dead_letters_an_invalid_context_Dataverse_queued_as_InvalidMessage(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
	body := bytes.Replace(readFile(t, "testdata/dataverse/docs-powerapps-update-contact-async.json"),
		[]byte(`"PrimaryEntityId": "`), []byte(`"PrimaryEntityId": "not-a-guid-`), -1)
	out := w.Process(context.Background(), fromDataverse(t, body))
	if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonInvalidMessage {
		t.Fatalf("outcome %v %q, want dead-letter InvalidMessage", out.Kind, out.Reason)
	}
	// Checked as the context it is, not as a canonical event missing its EventId.
	if !strings.Contains(out.Description, "RemoteExecutionContext") || !strings.Contains(out.Description, "/PrimaryEntityId") {
		t.Errorf("description %q", out.Description)
	}
}

func TestWorker_retries_a_context_Dataverse_queued_as_the_same_event(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(n int) reply {
		if n <= 3 { // the quick retries of the first delivery
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{status: http.StatusOK, body: `{}`}
	}
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
	r := &fakeRerouter{}
	body := readFile(t, "testdata/dataverse/docs-powerapps-update-contact-async.json")
	first, err := handleTriggered(context.Background(), w, fromDataverse(t, body), r)
	if err != nil || first.Kind != queue.RetryLater || len(r.published) != 1 {
		t.Fatalf("first delivery: %s, %v; scheduled %d", first.Summary, err, len(r.published))
	}
	copyOf := r.published[0]
	retry := queue.Delivery{MessageID: copyOf.MessageID, CorrelationID: copyOf.CorrelationID, Body: copyOf.Body,
		DeliveryCount: 1, ApplicationProperties: copyOf.ApplicationProperties}
	second := w.Process(context.Background(), retry)
	if second.Kind != queue.Complete || second.EventID != first.EventID {
		t.Fatalf("retry: %s (EventId %s, first %s)", second.Summary, second.EventID, first.EventID)
	}
	keys := map[string]bool{}
	for _, c := range h.erp.calls() {
		keys[c.header.Get("Idempotency-Key")] = true
	}
	if len(keys) != 1 || !keys[first.EventID] {
		t.Errorf("Idempotency-Keys sent: %v, want only %s", keys, first.EventID)
	}
}

func TestExplain_reads_a_context_Dataverse_queued_as_Process_does(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, nativeRoutes)})
	body := readFile(t, "testdata/dataverse/docs-powerapps-update-contact-async.json")
	ex, err := w.Explain(body)
	if err != nil {
		t.Fatal(err)
	}
	if ex.EventID != viaIntake(t, body).MessageID {
		t.Errorf("EventId %s", ex.EventID)
	}
	var matched []string
	for _, r := range ex.Routes {
		if r.Matches {
			matched = append(matched, r.Name)
		}
	}
	if fmt.Sprint(matched) != "[every-event contact-names]" {
		t.Errorf("matching routes %v", matched)
	}
	if _, err := w.Explain([]byte(dataContractXML)); err == nil || !strings.Contains(err.Error(), queue.ReasonUnsupportedMessageFormat) {
		t.Errorf("XML body: %v", err)
	}
}
