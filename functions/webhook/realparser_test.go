package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// nativeContact is the documented Dataverse webhook body (an Update of a contact).
const nativeContact = "docs-powerapps-update-contact-async.json"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newRealParser(t testing.TB) *event.Parser {
	t.Helper()
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nativeRequest(body []byte) webhook.Request {
	return webhook.Request{
		Method: http.MethodPost,
		Header: http.Header{
			"Content-Type":                {"application/json; charset=utf-8"},
			"X-Dvrelay-Secret":            {secret},
			"X-Ms-Dynamics-Entity-Name":   {"contact"},
			"X-Ms-Dynamics-Request-Name":  {"Update"},
			"X-Ms-Dynamics-Organization":  {"orgname.crm.dynamics.com"},
			"X-Ms-Correlation-Request-Id": {"b374239d-4233-41a9-8b17-a86cb4f737b5"},
		},
		Body:          body,
		ContentLength: int64(len(body)),
	}
}

func TestIntake_with_the_real_parser_queues_a_native_webhook(t *testing.T) {
	pub := &recordingPublisher{}
	logs := &syncBuffer{}
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, newRealParser(t), pub, slog.New(slog.NewJSONHandler(logs, nil)))

	res := in.Handle(context.Background(), nativeRequest(readTestdata(t, nativeContact)))
	if res.Status != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	msgs := pub.messages()
	if len(msgs) != 1 {
		t.Fatalf("published %d", len(msgs))
	}
	m := msgs[0]
	var ev event.Event
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.EventID == "" || m.MessageID != ev.EventID || m.Subject != "ContactUpdated" || ev.Entity != "contact" {
		t.Errorf("message %+v, event %+v", m, ev)
	}
	if m.CorrelationID != "b374239d-4233-41a9-8b17-a86cb4f737b5" || ev.CorrelationID != m.CorrelationID {
		t.Errorf("correlation: message %q, event %q", m.CorrelationID, ev.CorrelationID)
	}
	if m.ApplicationProperties[queue.PropEntity] != "contact" {
		t.Errorf("properties = %v", m.ApplicationProperties)
	}
	if strings.Contains(logs.String(), "James") {
		t.Errorf("an attribute value reached the logs: %s", logs.String())
	}
}

// A context its author trimmed (a virtual table's provider, a relay) lacks UserId and
// OrganizationId. A 400 would lose it for good: Dataverse never retries one.
func TestIntake_with_the_real_parser_queues_a_context_without_users_or_organization(t *testing.T) {
	var ctx map[string]any
	if err := json.Unmarshal(readTestdata(t, nativeContact), &ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"UserId", "InitiatingUserId", "OrganizationId", "BusinessUnitId"} {
		delete(ctx, name)
	}
	body, err := json.Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, newRealParser(t), pub, slog.New(slog.DiscardHandler))

	res := in.Handle(context.Background(), nativeRequest(body))

	if res.Status != http.StatusAccepted || len(pub.messages()) != 1 {
		t.Fatalf("status = %d, body %s; want 202 and the event queued", res.Status, res.Body)
	}
	var ev map[string]any
	if err := json.Unmarshal(pub.messages()[0].Body, &ev); err != nil {
		t.Fatal(err)
	}
	if _, ok := ev["OrganizationId"]; ok || ev["TriggeredBy"] != "" || ev["EventName"] != "ContactUpdated" {
		t.Errorf("event = %v; want OrganizationId left out and no one named as trigger", ev)
	}
}

func TestIntake_with_the_real_parser_lists_every_invalid_field(t *testing.T) {
	in := webhook.New(webhook.Config{}, newRealParser(t), &recordingPublisher{}, slog.New(slog.DiscardHandler))
	req := nativeRequest([]byte(`{"EventName":"X","RecordId":"nope","ChangedFields":[],"TriggeredBy":"u","Timestamp":"bad"}`))
	res := in.Handle(context.Background(), req)
	if res.Status != http.StatusBadRequest {
		t.Fatalf("status = %d", res.Status)
	}
	p := decodeProblem(t, res)
	got := map[string]bool{}
	for _, e := range p.Errors {
		got[e.Pointer] = e.Detail != ""
	}
	if !got["/RecordId"] || !got["/Timestamp"] {
		t.Errorf("errors = %+v", p.Errors)
	}

	res = in.Handle(context.Background(), nativeRequest([]byte(`[1]`)))
	if p := decodeProblem(t, res); res.Status != http.StatusBadRequest || len(p.Errors) != 0 {
		t.Errorf("malformed: status %d, problem %+v", res.Status, p)
	}
}

// countingPublisher is an in-memory broker that acks at once.
type countingPublisher struct{ n atomic.Int64 }

func (p *countingPublisher) Publish(context.Context, *queue.Message) error {
	p.n.Add(1)
	return nil
}

func BenchmarkIntake_Handle_native_payload(b *testing.B) {
	body := readTestdata(b, nativeContact)
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, newRealParser(b), &countingPublisher{}, slog.New(slog.DiscardHandler))
	req := nativeRequest(body)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if res := in.Handle(ctx, req); res.Status != http.StatusAccepted {
			b.Fatalf("status %d", res.Status)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkIntake_Handle_native_payload_parallel(b *testing.B) {
	body := readTestdata(b, nativeContact)
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, newRealParser(b), &countingPublisher{}, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := nativeRequest(body)
		for pb.Next() {
			if res := in.Handle(ctx, req); res.Status != http.StatusAccepted {
				b.Errorf("status %d", res.Status)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// fixedParser returns one prepared event, so the benchmark below measures the intake alone:
// checks, correlation, encoding the queue message and the 202, and the log line.
type fixedParser struct{ ev event.Event }

func (p fixedParser) Parse([]byte, event.Hints) (event.Event, error) { return p.ev, nil }

func BenchmarkIntake_Handle_pipeline_without_parsing(b *testing.B) {
	body := readTestdata(b, nativeContact)
	ev, err := newRealParser(b).Parse(body, event.Hints{})
	if err != nil {
		b.Fatal(err)
	}
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, fixedParser{ev}, &countingPublisher{}, slog.New(slog.DiscardHandler))
	req := nativeRequest(body)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := in.Handle(ctx, req); res.Status != http.StatusAccepted {
			b.Fatalf("status %d", res.Status)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func TestIntake_queues_markup_in_column_values_without_inflating_it(t *testing.T) {
	// An email's HTML description is mostly '<', '>' and '&'. Escaped as \u003c and the like,
	// each grows sixfold, and a body Dataverse kept under 256 KB would no longer fit a
	// Service Bus message: the publish fails every time and the event is lost.
	pub := &recordingPublisher{}
	in := webhook.New(webhook.Config{}, newRealParser(t), pub, slog.New(slog.DiscardHandler))
	const markup = `<p>Terms & conditions</p>`
	body := strings.Replace(string(readTestdata(t, nativeContact)), `"James"`, strconv.Quote(markup), 1)

	res := in.Handle(context.Background(), nativeRequest([]byte(body)))
	if res.Status != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	m := pub.messages()[0]
	if !bytes.Contains(m.Body, []byte(`"firstname":"`+markup+`"`)) {
		t.Errorf("queued body does not carry the value as sent:\n%s", m.Body)
	}
	var ev event.Event
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if got := string(ev.Attributes["firstname"]); got != strconv.Quote(markup) {
		t.Errorf("firstname = %s", got)
	}
}

// The intake lends its buffers from request to request: a body it queued must stay as it was
// queued while later requests reuse them, and carry the mark that lets the worker trust it.
func TestIntake_queued_bodies_stay_intact_and_marked_while_later_requests_reuse_the_buffers(t *testing.T) {
	pub := &recordingPublisher{}
	p := newRealParser(t)
	in := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}}, p, pub, slog.New(slog.DiscardHandler))
	bodies := [][]byte{readTestdata(t, nativeContact), readTestdata(t, nativeContact)}
	bodies[1] = bytes.ReplaceAll(bodies[1], []byte("James"), []byte("Jimmy"))
	var copies [][]byte
	for i := range 6 {
		res := in.Handle(context.Background(), nativeRequest(bytes.Clone(bodies[i%2])))
		if res.Status != http.StatusAccepted {
			t.Fatalf("status = %d, body %s", res.Status, res.Body)
		}
		msgs := pub.messages()
		copies = append(copies, bytes.Clone(msgs[len(msgs)-1].Body))
	}
	for i, m := range pub.messages() {
		if !bytes.Equal(m.Body, copies[i]) {
			t.Fatalf("message %d changed after it was queued:\nnow  %s\nthen %s", i, m.Body, copies[i])
		}
		if !event.Marked(m.Body, m.ApplicationProperties) {
			t.Errorf("message %d is not marked as the intake's canonical event", i)
		}
		if _, err := p.DecodeCanonical(m.Body); err != nil {
			t.Errorf("message %d is not a valid canonical event: %v", i, err)
		}
	}
}
