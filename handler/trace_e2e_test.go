package main

// W3C trace context end to end, in both runtimes: a traceparent posted to the intake comes back
// on the answer, rides on the queue message (Diagnostic-Id and traceparent application
// properties) and reaches every downstream call the worker makes, as a child of the intake.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

const (
	callerTrace       = "0af7651916cd43dd8448eb211c80319c"
	callerSpan        = "b7ad6b7169203331"
	callerTraceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// tracingDownstream is an ERP or credit double that records the traceparent of every call by
// Idempotency-Key, and answers status with body.
type tracingDownstream struct {
	mu     sync.Mutex
	seen   map[string][]string
	status int
	body   string
	srv    *httptest.Server
}

func newTracingDownstream(t *testing.T, status int, body string) *tracingDownstream {
	d := &tracingDownstream{seen: map[string][]string{}, status: status, body: body}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		key := r.Header.Get("Idempotency-Key")
		d.seen[key] = append(d.seen[key], r.Header.Get("traceparent"))
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(d.status)
		_, _ = io.WriteString(w, d.body)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// first is the traceparent of the first call for key, parsed; ok is false until there is one.
func (d *tracingDownstream) first(t *testing.T, key string) (tracecontext.SpanContext, bool) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen[key]) == 0 {
		return tracecontext.SpanContext{}, false
	}
	sc, err := tracecontext.Parse(d.seen[key][0])
	if err != nil {
		t.Fatalf("the call for %s carried traceparent %q: %v", key, d.seen[key][0], err)
	}
	return sc, true
}

// awaitCall waits for the first call for key and returns its trace context.
func (d *tracingDownstream) awaitCall(t *testing.T, what, key string) tracecontext.SpanContext {
	t.Helper()
	var sc tracecontext.SpanContext
	eventually(t, what, func() bool {
		var ok bool
		sc, ok = d.first(t, key)
		return ok
	})
	return sc
}

func traceEnv(credit, erp *tracingDownstream, extra ...string) []string {
	return baseEnv(append([]string{
		"DVRELAY_CREDIT_URL=" + credit.srv.URL,
		"DVRELAY_ERP_URL=" + erp.srv.URL,
		"DVRELAY_LOCK_DURATION=5s",
	}, extra...)...)
}

// postTraced posts the sample event with header and returns its 202 body and answered trace.
func postTraced(t *testing.T, addr string, header http.Header) (accepted, tracecontext.SpanContext) {
	t.Helper()
	resp, b, err := post(context.Background(), addr, sampleEvent(t), header)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("202 body %s: %v", b, err)
	}
	sc, err := tracecontext.Parse(resp.Header.Get("traceparent"))
	if err != nil {
		t.Fatalf("answer traceparent %q: %v", resp.Header.Get("traceparent"), err)
	}
	return a, sc
}

// checkChild fails unless got is in trace and is neither the caller's nor the intake's span.
func checkChild(t *testing.T, what string, got, intake tracecontext.SpanContext, trace string) {
	t.Helper()
	if got.TraceID.String() != trace {
		t.Errorf("%s: trace %s, want %s", what, got.TraceID, trace)
	}
	if got.SpanID == intake.SpanID || got.SpanID.String() == callerSpan {
		t.Errorf("%s: parent id %s is not the worker's own span (intake %s, caller %s)", what, got.SpanID, intake.SpanID, callerSpan)
	}
}

func TestServe_carries_the_callers_trace_to_the_queue_message_and_the_downstream_calls(t *testing.T) {
	t.Parallel()
	// The ERP refuses the event for good, so it is parked and its properties can be read back.
	credit := newTracingDownstream(t, http.StatusOK, `{"score":712}`)
	erp := newTracingDownstream(t, http.StatusBadRequest, `{"error":"no such customer"}`)
	p := startServe(t, t.TempDir(), freeAddr(t), traceEnv(credit, erp))

	a, intake := postTraced(t, p.addr, http.Header{"Traceparent": {callerTraceparent}})
	if intake.TraceID.String() != callerTrace || intake.SpanID.String() == callerSpan {
		t.Fatalf("answered %s, want a child of %s", intake, callerTraceparent)
	}

	creditCall := credit.awaitCall(t, "the credit call", a.EventID)
	erpCall := erp.awaitCall(t, "the ERP call", a.EventID)
	checkChild(t, "credit call", creditCall, intake, callerTrace)
	if erpCall != creditCall {
		t.Errorf("one delivery sent %s to credit and %s to the ERP", creditCall, erpCall)
	}

	eventually(t, "a dead letter", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })
	resp, err := http.Get("http://" + p.addr + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		DeadLetters []admin.DeadLetter `json:"deadLetters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.DeadLetters) != 1 {
		t.Fatalf("dead letters %+v: %v", list.DeadLetters, err)
	}
	props := list.DeadLetters[0].Properties
	for _, k := range []string{"Diagnostic-Id", "traceparent"} {
		if props[k] != intake.String() {
			t.Errorf("queue message property %s = %v, want the intake's span %s", k, props[k], intake)
		}
	}
}

func TestServe_starts_a_new_trace_for_an_invalid_traceparent_without_failing(t *testing.T) {
	t.Parallel()
	credit := newTracingDownstream(t, http.StatusOK, `{"score":712}`)
	erp := newTracingDownstream(t, http.StatusOK, `{}`)
	p := startServe(t, t.TempDir(), freeAddr(t), traceEnv(credit, erp))

	bad := "00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01"
	a, intake := postTraced(t, p.addr, http.Header{"Traceparent": {bad}})
	if strings.EqualFold(intake.TraceID.String(), callerTrace) {
		t.Fatalf("the invalid traceparent was followed: %s", intake)
	}
	checkChild(t, "ERP call", erp.awaitCall(t, "the ERP call", a.EventID), intake, intake.TraceID.String())
}

// traceInvocation is the host's Service Bus trigger invocation for body, with application
// properties in both places the host has put them (ApplicationProperties, UserProperties).
func traceInvocation(body []byte, props map[string]any) []byte {
	once, _ := json.Marshal(string(body))
	b, _ := json.Marshal(map[string]any{
		"Data": map[string]any{"msg": string(once)},
		"Metadata": map[string]any{
			"DeliveryCount":         "1",
			"MessageId":             `"evt-traced"`,
			"CorrelationId":         `"corr-1"`,
			"SequenceNumber":        "7",
			"ApplicationProperties": props,
			"UserProperties":        props,
		},
	})
	return b
}

func TestCustomHandler_continues_the_trace_of_the_message_and_of_the_webhook_call(t *testing.T) {
	t.Parallel()
	// The ERP refuses every event for good, so each one is parked on the embedded queue's
	// dead-letter queue, where the properties of the message the intake queued can be read back.
	credit := newTracingDownstream(t, http.StatusOK, `{"score":640}`)
	erp := newTracingDownstream(t, http.StatusBadRequest, `{"error":"no such customer"}`)
	dataDir, addr := t.TempDir(), freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	env := append(traceEnv(credit, erp, "DVRELAY_DATA_DIR="+dataDir), "FUNCTIONS_CUSTOMHANDLER_PORT="+port, "FUNCTIONS_WORKER_RUNTIME=custom")
	p := startProcess(t, addr, "/", env)
	queued := map[string]tracecontext.SpanContext{} // event id → the intake's span

	t.Run("EventWorker follows the message's Diagnostic-Id and traceparent", func(t *testing.T) {
		const messageSpan = "00f067aa0ba902b7"
		tp := "00-" + callerTrace + "-" + messageSpan + "-01"
		body, id := canonicalSample(t)
		invokeWorker(t, addr, traceInvocation(body, map[string]any{"Attempt": 1, "Diagnostic-Id": tp, "traceparent": tp}))
		sc, ok := credit.first(t, id)
		if !ok {
			t.Fatalf("no credit call for %s", id)
		}
		if sc.TraceID.String() != callerTrace || sc.SpanID.String() == messageSpan {
			t.Errorf("credit call carried %s, want trace %s with a parent id other than %s", sc, callerTrace, messageSpan)
		}
	})

	t.Run("forwarded webhook call", func(t *testing.T) {
		a, intake := postTraced(t, addr, http.Header{"Traceparent": {callerTraceparent}})
		if intake.TraceID.String() != callerTrace {
			t.Fatalf("answered %s, want trace %s", intake, callerTrace)
		}
		queued[a.EventID] = intake
		checkChild(t, "ERP call", erp.awaitCall(t, "the ERP call", a.EventID), intake, callerTrace)
	})

	t.Run("webhook call in the host's envelope", func(t *testing.T) {
		inv := envelope(sampleEvent(t), map[string][]string{"Content-Type": {"application/json"}, "traceparent": {callerTraceparent}})
		resp, err := http.Post("http://"+addr+"/DataverseWebhook", "application/json", bytes.NewReader(inv))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r hostResult
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if got := strings.Trim(string(r.Outputs.Res.StatusCode), `"`); got != "202" {
			t.Fatalf("Outputs.res = %+v", r.Outputs.Res)
		}
		intake, err := tracecontext.Parse(headerValue(r.Outputs.Res.Headers, "traceparent"))
		if err != nil || intake.TraceID.String() != callerTrace {
			t.Fatalf("Outputs.res.headers = %v (%v), want a traceparent in trace %s", r.Outputs.Res.Headers, err, callerTrace)
		}
		var a accepted
		if err := json.Unmarshal([]byte(r.Outputs.Res.Body), &a); err != nil || a.EventID == "" {
			t.Fatalf("Outputs.res.body %q: %v", r.Outputs.Res.Body, err)
		}
		queued[a.EventID] = intake
		checkChild(t, "ERP call", erp.awaitCall(t, "the ERP call", a.EventID), intake, callerTrace)
	})

	t.Run("the queued messages carry the intake's span", func(t *testing.T) {
		eventually(t, "three dead letters", func() bool { return health(t, addr)["deadLettered"] == float64(3) })
		p.stop(t, syscall.SIGTERM)
		cmd := exec.Command(binaryPath, "dlq", "list", "--json", "--data-dir", dataDir)
		cmd.Env, cmd.Dir = baseEnv(), appRoot
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dlq list: %v\n%s", err, out)
		}
		// dlq list --json writes one dead letter per line.
		var parked []admin.DeadLetter
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var d admin.DeadLetter
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatalf("dlq list --json: %v\n%s", err, out)
			}
			parked = append(parked, d)
		}
		for id, intake := range queued {
			found := false
			for _, d := range parked {
				if !strings.HasPrefix(d.MessageID, id) {
					continue
				}
				found = true
				// Listings leave the properties out; show has them.
				show := exec.Command(binaryPath, "dlq", "show", strconv.FormatInt(d.SequenceNumber, 10), "--json", "--data-dir", dataDir)
				show.Env, show.Dir = baseEnv(), appRoot
				detail, err := show.Output()
				if err != nil {
					t.Fatalf("dlq show %d: %v\n%s", d.SequenceNumber, err, detail)
				}
				var full admin.Detail
				if err := json.Unmarshal(detail, &full); err != nil {
					t.Fatalf("dlq show --json: %v\n%s", err, detail)
				}
				d = full.DeadLetter
				for _, k := range []string{"Diagnostic-Id", "traceparent"} {
					if d.Properties[k] != intake.String() {
						t.Errorf("event %s: property %s = %v, want the intake's span %s", id, k, d.Properties[k], intake)
					}
				}
			}
			if !found {
				t.Errorf("event %s is not among the dead letters %+v", id, parked)
			}
		}
	})
}

// headerValue looks a header up in a map whatever the case of its key.
func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}
