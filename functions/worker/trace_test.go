package worker_test

import (
	"context"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
	"github.com/dvrelay/dvrelay/internal/queue"
)

const (
	intakeTrace       = "4bf92f3577b34da6a3ce929d0e0e4736"
	intakeSpan        = "00f067aa0ba902b7"
	intakeTraceparent = "00-" + intakeTrace + "-" + intakeSpan + "-01"
)

// sentTrace parses the traceparent a double received; the test fails without a valid one.
func sentTrace(t *testing.T, who string, r recorded) tracecontext.SpanContext {
	t.Helper()
	sc, err := tracecontext.Parse(r.header.Get("traceparent"))
	if err != nil {
		t.Fatalf("%s call has no valid traceparent (%q): %v", who, r.header.Get("traceparent"), err)
	}
	return sc
}

// tracedCalls runs one delivery and returns the traceparent each downstream received: credit,
// Dataverse, ERP, in route order.
func tracedCalls(t *testing.T, h *harness, w *worker.Worker, d queue.Delivery) []tracecontext.SpanContext {
	t.Helper()
	before := [3]int{len(h.credit.calls()), len(h.dv.calls()), len(h.erp.calls())}
	if out := w.Process(context.Background(), d); out.Kind != queue.Complete {
		t.Fatalf("outcome %v: %s", out.Kind, out.Summary)
	}
	credit, dv, erp := h.credit.calls(), h.dv.calls(), h.erp.calls()
	if len(credit) != before[0]+1 || len(dv) != before[1]+1 || len(erp) != before[2]+1 {
		t.Fatalf("calls credit %d, dataverse %d, erp %d; want one more each", len(credit), len(dv), len(erp))
	}
	return []tracecontext.SpanContext{
		sentTrace(t, "credit", credit[len(credit)-1]),
		sentTrace(t, "dataverse", dv[len(dv)-1]),
		sentTrace(t, "erp", erp[len(erp)-1]),
	}
}

func TestWorker_continues_the_messages_trace_on_every_downstream_call(t *testing.T) {
	for name, props := range map[string]map[string]any{
		"both properties, as the intake writes them":      {"Diagnostic-Id": intakeTraceparent, "traceparent": intakeTraceparent},
		"Diagnostic-Id alone, as a .NET sender writes it": {"Diagnostic-Id": intakeTraceparent},
		"traceparent alone":                               {"traceparent": intakeTraceparent},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{})
			d := delivery(t, opportunityEvent(), 1)
			for k, v := range props {
				d.ApplicationProperties[k] = v
			}
			sent := tracedCalls(t, h, w, d)
			for i, sc := range sent {
				if sc.TraceID.String() != intakeTrace {
					t.Errorf("call %d: trace %s, want the message's %s", i, sc.TraceID, intakeTrace)
				}
				if sc.SpanID.String() == intakeSpan {
					t.Errorf("call %d: parent id is the intake's span %s, want the delivery's own", i, intakeSpan)
				}
				if sc.SpanID != sent[0].SpanID || sc.Flags != tracecontext.FlagSampled {
					t.Errorf("call %d: %s, want the delivery's one span %s", i, sc, sent[0])
				}
			}
			// X-Correlation-ID travels beside it, unchanged.
			if got := h.erp.calls()[0].header.Get("X-Correlation-ID"); got != corrID {
				t.Errorf("X-Correlation-ID = %q", got)
			}
		})
	}
}

func TestWorker_gives_each_delivery_of_a_message_its_own_span(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})
	d := delivery(t, opportunityEvent(), 1)
	d.ApplicationProperties["traceparent"] = intakeTraceparent
	first := tracedCalls(t, h, w, d)[0]
	d.DeliveryCount = 2
	second := tracedCalls(t, h, w, d)[0]
	if first.TraceID != second.TraceID || first.SpanID == second.SpanID {
		t.Errorf("deliveries sent %s and %s, want one trace and two spans", first, second)
	}
}

func TestWorker_starts_a_trace_for_a_message_without_a_valid_one(t *testing.T) {
	for name, props := range map[string]map[string]any{
		"none":    {},
		"invalid": {"traceparent": "00-" + intakeTrace + "-0000000000000000-01", "Diagnostic-Id": "|legacy.1."},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{})
			d := delivery(t, opportunityEvent(), 1)
			for k, v := range props {
				d.ApplicationProperties[k] = v
			}
			sent := tracedCalls(t, h, w, d)
			if sent[0].TraceID.String() == intakeTrace || sent[0].TraceID != sent[2].TraceID {
				t.Errorf("calls sent %s and %s, want one new trace", sent[0], sent[2])
			}
		})
	}
}

func TestWorker_logs_the_trace_and_span_beside_the_correlation_id(t *testing.T) {
	h := newHarness(t)
	w := h.worker(t, worker.Config{})
	d := delivery(t, opportunityEvent(), 1)
	d.ApplicationProperties["traceparent"] = intakeTraceparent
	span := tracedCalls(t, h, w, d)[0]

	var seen int
	for _, line := range h.logs.lines(t) {
		if line["correlationId"] == nil {
			continue
		}
		seen++
		if line["traceId"] != intakeTrace || line["spanId"] != span.SpanID.String() {
			t.Errorf("log line %q: traceId %v spanId %v, want %s %s", line["msg"], line["traceId"], line["spanId"], intakeTrace, span.SpanID)
		}
	}
	if seen == 0 {
		t.Fatal("no log line carries a correlationId")
	}
}
