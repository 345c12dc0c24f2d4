package worker_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// orderSubmittedRoutes says "the custom API new_OrderSubmitted, asynchronous, post-operation,
// from this organization, with an order id", and writes to the event's own record (which an
// unbound message does not have).
const orderSubmittedRoutes = `{"routes":[{"name":"order-submitted","match":{
	"messages":["new_OrderSubmitted"],"stages":[40],"modes":[1],
	"organizationId":"1B6A0F3E-2D4C-4E8A-9F5B-6C7D8E9FA0B1","parameters":["OrderId"]},
	"steps":[{"name":"log","type":"log"},
	         {"name":"stamp","type":"dataverse-update","set":{"new_seen":true}}]}]}`

// orderSubmitted is the canonical event of samples/custom-api-order-submitted.json, as the
// intake queues it.
func orderSubmitted(t *testing.T, adjust ...func(map[string]any)) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../../samples/custom-api-order-submitted.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Parse(raw, event.Hints{ReceivedAt: time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(ev)
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, f := range adjust {
		f(m)
	}
	return m
}

func TestRoutes_match_a_custom_API_by_stage_mode_organization_and_parameters(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, orderSubmittedRoutes)})
	tests := []struct {
		name     string
		adjust   func(map[string]any)
		mismatch string
	}{
		{"the event the route describes", func(map[string]any) {}, ""},
		{"a parameter named in another case", func(ev map[string]any) {
			p := ev["Parameters"].(map[string]any)
			p["orderid"] = p["OrderId"]
			delete(p, "OrderId")
		}, ""},
		{"a PreOperation step", func(ev map[string]any) { ev["Stage"] = 20 },
			"the stage is 20 (PreOperation), the route wants 40 (PostOperation)"},
		{"a synchronous step", func(ev map[string]any) { ev["Mode"] = 0 },
			"the mode is 0 (synchronous), the route wants 1 (asynchronous)"},
		{"another organization", func(ev map[string]any) { ev["OrganizationId"] = "2b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1" },
			"the organization is 2b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1, the route wants 1B6A0F3E-2D4C-4E8A-9F5B-6C7D8E9FA0B1"},
		{"without the parameter", func(ev map[string]any) { ev["Parameters"] = map[string]any{"OrderNumber": "SO-1", "Quantity": 2} },
			"parameter OrderId is not in the event (it has OrderNumber, Quantity)"},
		{"with the parameter null", func(ev map[string]any) { ev["Parameters"].(map[string]any)["OrderId"] = nil },
			"parameter OrderId is not in the event (it has "},
		{"trimmed by Dataverse", func(ev map[string]any) { delete(ev, "Parameters"); ev["Trimmed"] = true },
			"parameter OrderId is not in the event (the payload was trimmed by Dataverse and carries no parameters)"},
		{"a plugin event, which says neither stage nor mode", func(ev map[string]any) {
			delete(ev, "Stage")
			delete(ev, "Mode")
			ev["Source"] = event.SourcePlugin
		}, "the event does not say its stage (a plugin event), the route wants 40 (PostOperation)"},
		{"an event that says its stage but not its mode", func(ev map[string]any) { delete(ev, "Mode") },
			"the event does not say its mode (the payload did not say), the route wants 1 (asynchronous)"},
		{"an event without an organization", func(ev map[string]any) { delete(ev, "OrganizationId"); ev["Source"] = event.SourcePlugin },
			"the event names no organization (a plugin event), the route wants 1B6A0F3E-2D4C-4E8A-9F5B-6C7D8E9FA0B1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := explainBody(t, w, orderSubmitted(t, tt.adjust))
			r := ex.Routes[0]
			switch {
			case tt.mismatch == "" && !r.Matches:
				t.Errorf("route does not match: %s", r.Mismatch)
			case tt.mismatch != "" && (r.Matches || !strings.HasPrefix(r.Mismatch, tt.mismatch)):
				t.Errorf("mismatch = %q, want %q", r.Mismatch, tt.mismatch)
			}
		})
	}
}

func TestProcess_runs_an_unbound_event_and_skips_writing_to_a_record_it_does_not_have(t *testing.T) {
	h := newHarness(t)
	h.settings["DATAVERSE_URL"] = h.dvURL
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, orderSubmittedRoutes)})
	ev := orderSubmitted(t)

	out := w.Process(context.Background(), delivery(t, ev, 1))

	if out.Kind != queue.Complete || !strings.Contains(out.Summary, "order-submitted") {
		t.Errorf("outcome = %+v, want complete through the route", out)
	}
	if n := len(h.dv.calls()); n != 0 {
		t.Errorf("Dataverse got %d calls; an event without a record has nothing to update", n)
	}
	ex := explainBody(t, w, ev)
	if s := ex.Routes[0].Steps[1]; !strings.HasPrefix(s.Skip, "the event names no record") {
		t.Errorf("stamp = %+v, want skipped: the event names no record", s)
	}
}

func TestNew_words_a_bad_stage_mode_or_organization_in_a_route(t *testing.T) {
	tests := map[string]struct{ match, want string }{
		"stage 30":         {`{"stages":[30]}`, `match.stages.0 30 must be one of 10, 20, 40`},
		"mode as a word":   {`{"modes":["async"]}`, `match.modes.0 "async" must be one of 0, 1`},
		"organization":     {`{"organizationId":"contoso"}`, `organizationId "contoso" is not a GUID`},
		"empty parameters": {`{"parameters":[]}`, `match.parameters: list at least one value`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadRoutesError(t, `{"routes":[{"name":"r1","match":`+tt.match+`,"steps":[{"name":"s","type":"log"}]}]}`)
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `route "r1"`) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestProcess_posts_a_custom_API_s_parameters_a_route_selects(t *testing.T) {
	h := newHarness(t)
	routes := `{"routes":[{"name":"order-submitted","match":{"messages":["new_OrderSubmitted"],"stages":[40],"modes":[1],"parameters":["OrderId"]},
		"steps":[{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}","body":{"select":["EventId","Parameters.OrderId","Parameters.Total","Parameters.Customer"]}}]}]}`
	w := h.worker(t, worker.Config{RoutesPath: writeRoutes(t, routes)})

	out := w.Process(context.Background(), delivery(t, orderSubmitted(t), 1))

	calls := h.erp.calls()
	if out.Kind != queue.Complete || len(calls) != 1 {
		t.Fatalf("outcome %+v, %d ERP calls", out, len(calls))
	}
	want := `"Parameters":{"Customer":{"id":"a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22","logicalName":"account","name":"Contoso Ltd"},` +
		`"OrderId":"9e4b7c2d-5a1f-ef11-a670-000d3a5c1e22","Total":38850.0000}`
	if !strings.Contains(string(calls[0].body), want) {
		t.Errorf("ERP body = %s\nwant it to hold %s", calls[0].body, want)
	}
}
