package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
)

const (
	callerTrace       = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan        = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// answeredTrace is the traceparent the intake answered with, parsed; the test fails without one.
func answeredTrace(t *testing.T, res webhook.Response) tracecontext.SpanContext {
	t.Helper()
	sc, err := tracecontext.Parse(res.Header.Get("traceparent"))
	if err != nil {
		t.Fatalf("answer %d has no valid traceparent (%q): %v", res.Status, res.Header.Get("traceparent"), err)
	}
	return sc
}

func TestIntake_continues_the_callers_trace_on_the_answer_and_the_queued_message(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Set("traceparent", callerTraceparent)
	res := h.in.Handle(context.Background(), req)
	if res.Status != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}

	sc := answeredTrace(t, res)
	if sc.TraceID.String() != callerTrace {
		t.Errorf("answered trace %s, want the caller's %s", sc.TraceID, callerTrace)
	}
	if sc.SpanID.String() == callerSpan {
		t.Errorf("the intake answered with the caller's own span id %s", callerSpan)
	}

	msgs := h.pub.messages()
	if len(msgs) != 1 {
		t.Fatalf("published %d messages", len(msgs))
	}
	// The Service Bus SDKs' names: the Functions trigger links its invocation to Diagnostic-Id.
	for _, k := range []string{"Diagnostic-Id", "traceparent"} {
		if got := msgs[0].ApplicationProperties[k]; got != sc.String() {
			t.Errorf("message property %s = %#v, want the intake's span %s", k, got, sc)
		}
	}

	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(h.logs.String())), &line); err != nil {
		t.Fatalf("log line: %v\n%s", err, h.logs.String())
	}
	if line["traceId"] != callerTrace || line["spanId"] != sc.SpanID.String() || line["correlationId"] != "payload-corr-1" {
		t.Errorf("log line = %v", line)
	}
}

func TestIntake_starts_a_new_trace_when_traceparent_is_missing_or_invalid(t *testing.T) {
	for name, header := range map[string]string{
		"missing":        "",
		"upper-case hex": "00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01",
		"all zeros":      "00-" + strings.Repeat("0", 32) + "-" + callerSpan + "-01",
		"garbage":        "not a traceparent",
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, webhook.Config{})
			req := validRequest()
			if header != "" {
				req.Header.Set("traceparent", header)
			}
			res := h.in.Handle(context.Background(), req)
			if res.Status != http.StatusAccepted {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			sc := answeredTrace(t, res)
			if strings.EqualFold(sc.TraceID.String(), callerTrace) {
				t.Errorf("an invalid traceparent was followed: %s", sc)
			}
			if sc.Flags != tracecontext.FlagSampled {
				t.Errorf("a new trace is not sampled: %s", sc)
			}
			if msgs := h.pub.messages(); len(msgs) != 1 || msgs[0].ApplicationProperties["traceparent"] != sc.String() {
				t.Errorf("message does not carry the new trace %s", sc)
			}
		})
	}
}

func TestIntake_gives_each_untraced_request_its_own_trace(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	a := answeredTrace(t, h.in.Handle(context.Background(), validRequest()))
	b := answeredTrace(t, h.in.Handle(context.Background(), validRequest()))
	if a.TraceID == b.TraceID {
		t.Errorf("two requests share trace %s", a.TraceID)
	}
}

func TestIntake_follows_a_W3C_compatible_Request_Id_when_there_is_no_traceparent(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Set("Request-Id", "|"+callerTrace+"."+callerSpan+".")
	if sc := answeredTrace(t, h.in.Handle(context.Background(), req)); sc.TraceID.String() != callerTrace {
		t.Errorf("answered trace %s, want %s", sc.TraceID, callerTrace)
	}
}

func TestIntake_answers_a_rejected_request_in_the_callers_trace(t *testing.T) {
	h := newHarness(t, webhook.Config{})
	req := validRequest()
	req.Header.Set("X-Dvrelay-Secret", "wrong")
	req.Header.Set("traceparent", callerTraceparent)
	res := h.in.Handle(context.Background(), req)
	if res.Status != http.StatusUnauthorized {
		t.Fatalf("status %d", res.Status)
	}
	if sc := answeredTrace(t, res); sc.TraceID.String() != callerTrace {
		t.Errorf("answered trace %s, want %s", sc.TraceID, callerTrace)
	}
}
