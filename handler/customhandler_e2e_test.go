package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// startCustomHandler starts the binary as the Functions host does: no arguments, the port in
// FUNCTIONS_CUSTOMHANDLER_PORT, settings in the environment.
func startCustomHandler(t *testing.T, env []string) string {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	env = append(env, "FUNCTIONS_CUSTOMHANDLER_PORT="+port, "FUNCTIONS_WORKER_RUNTIME=custom")
	// The host polls GET / until any HTTP answer arrives.
	return startProcess(t, addr, "/", env).addr
}

// unreachableServiceBus is a connection string whose endpoint nobody answers.
func unreachableServiceBus(t *testing.T) string {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return "ServiceBusConnection=Endpoint=sb://127.0.0.1:" + port +
		"/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0;UseDevelopmentEmulator=true"
}

// envelope builds a host invocation for the HTTP trigger, shaped as the host sends it:
// headers as arrays, Body as a string, the function key in Url and Query.
func envelope(body []byte, headers map[string][]string) []byte {
	req := map[string]any{
		"Url":     "https://contoso-fn.azurewebsites.net/api/dataverse/webhook?code=the-function-key",
		"Method":  "POST",
		"Query":   map[string]string{"code": "the-function-key"},
		"Headers": headers,
		"Params":  map[string]string{},
	}
	if len(body) > 0 {
		req["Body"] = string(body)
	}
	b, _ := json.Marshal(map[string]any{
		"Data":     map[string]any{"req": req},
		"Metadata": map[string]any{"sys": map[string]any{"MethodName": "DataverseWebhook"}},
	})
	return b
}

type hostResult struct {
	Outputs struct {
		Res struct {
			StatusCode json.RawMessage   `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Body       string            `json:"body"`
		} `json:"res"`
	}
	Logs []string
}

func TestCustomHandler_answers_503_with_Retry_After_when_Service_Bus_is_unreachable(t *testing.T) {
	t.Parallel()
	addr := startCustomHandler(t, baseEnv(unreachableServiceBus(t), "DVRELAY_PUBLISH_TIMEOUT=2s"))
	body := sampleEvent(t)

	t.Run("forwarded", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/dataverse/webhook?code=the-function-key", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Azure-Functions-InvocationId", "3b2f8c1e-7d4a-4b9e-a1c2-d3e4f5a6b7c8")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
	})
	t.Run("envelope", func(t *testing.T) {
		inv := envelope(body, map[string][]string{"Content-Type": {"application/json"}, "Content-Length": {"1"}})
		resp, err := http.Post("http://"+addr+"/DataverseWebhook", "application/json; charset=utf-8", bytes.NewReader(inv))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("invocation answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var r hostResult
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if strings.Trim(string(r.Outputs.Res.StatusCode), `"`) != "503" || r.Outputs.Res.Headers["Retry-After"] == "" {
			t.Errorf("Outputs.res = %+v", r.Outputs.Res)
		}
	})
}

func TestCustomHandler_rejects_bad_input_in_both_forms(t *testing.T) {
	t.Parallel()
	addr := startCustomHandler(t, baseEnv(unreachableServiceBus(t), "DVRELAY_WEBHOOK_SECRET=s3cret", "DVRELAY_MAX_BODY_BYTES=65536"))
	cases := []struct {
		name    string
		body    []byte
		headers map[string][]string
		status  int
	}{
		{"no secret", sampleEvent(t), map[string][]string{"Content-Type": {"application/json"}}, 401},
		{"malformed", []byte("{"), map[string][]string{"Content-Type": {"application/json"}, "X-Dvrelay-Secret": {"s3cret"}}, 400},
		{"invalid", []byte(`{"PrimaryEntityId":"nope"}`), map[string][]string{"Content-Type": {"application/json"}, "X-Dvrelay-Secret": {"s3cret"}}, 400},
		{"media type", []byte(`{}`), map[string][]string{"Content-Type": {"text/xml"}, "X-Dvrelay-Secret": {"s3cret"}}, 415},
		{"too large", bytes.Repeat([]byte("x"), 70000), map[string][]string{"Content-Type": {"application/json"}, "X-Dvrelay-Secret": {"s3cret"}}, 413},
	}
	for _, c := range cases {
		t.Run("forwarded "+c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/dataverse/webhook?code=k", bytes.NewReader(c.body))
			for k, v := range c.headers {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("status %d %q, want %d problem", resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
			}
		})
		t.Run("envelope "+c.name, func(t *testing.T) {
			resp, err := http.Post("http://"+addr+"/DataverseWebhook", "application/json", bytes.NewReader(envelope(c.body, c.headers)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r hostResult
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			if got := strings.Trim(string(r.Outputs.Res.StatusCode), `"`); got != itoa(c.status) {
				t.Errorf("Outputs.res.statusCode = %s, want %d", got, c.status)
			}
			if !strings.HasPrefix(r.Outputs.Res.Headers["Content-Type"], "application/problem+json") {
				t.Errorf("Outputs.res.headers = %v", r.Outputs.Res.Headers)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// serviceBusInvocation builds the host's Service Bus trigger invocation with the default
// (double-encoded) or binary (base64) message body.
func serviceBusInvocation(body []byte, binary bool) []byte {
	var msg string
	if binary {
		msg = base64.StdEncoding.EncodeToString(body)
	} else {
		once, _ := json.Marshal(string(body))
		msg = string(once) // the host JSON-encodes the string, then serialises it again below
	}
	b, _ := json.Marshal(map[string]any{
		"Data": map[string]any{"msg": msg},
		"Metadata": map[string]any{
			"DeliveryCount":         "1",
			"MessageId":             `"evt-1"`,
			"CorrelationId":         `"corr-1"`,
			"SequenceNumber":        "42",
			"ApplicationProperties": map[string]any{"Attempt": 1},
			"UserProperties":        map[string]any{"Attempt": 1},
		},
	})
	return b
}

func TestCustomHandler_EventWorker_answers_500_when_it_cannot_park_a_poison_message(t *testing.T) {
	t.Parallel()
	addr := startCustomHandler(t, baseEnv(unreachableServiceBus(t), "DVRELAY_PUBLISH_TIMEOUT=2s"))
	resp, err := http.Post("http://"+addr+"/EventWorker", "application/json", bytes.NewReader(serviceBusInvocation([]byte(`{"not":"an event"}`), false)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The dead-letter queue is unreachable: the host must abandon and redeliver, losing nothing.
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
}

// canonicalSample is the queue message the intake makes of the opportunity sample.
func canonicalSample(t *testing.T) (body []byte, eventID string) {
	t.Helper()
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Parse(sampleEvent(t), event.Hints{ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ev.CorrelationID = "corr-1"
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b, ev.EventID
}

func invokeWorker(t *testing.T, addr string, inv []byte) hostResult {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/EventWorker", "application/json; charset=utf-8", bytes.NewReader(inv))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("EventWorker answered %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var r hostResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCustomHandler_EventWorker_settles_each_outcome_on_the_configured_backend(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":640}`), newDownstream(t, `{}`)
	dataDir := t.TempDir()
	addr := startCustomHandler(t, flowEnv(credit, erp, "DVRELAY_DATA_DIR="+dataDir))

	t.Run("success completes after every step ran", func(t *testing.T) {
		for _, binary := range []bool{false, true} {
			body, id := canonicalSample(t)
			r := invokeWorker(t, addr, serviceBusInvocation(body, binary))
			if credit.count(id) != 1 || erp.count(id) != 1 {
				t.Errorf("binary=%v: credit %d, erp %d calls for %s", binary, credit.count(id), erp.count(id), id)
			}
			if len(r.Logs) == 0 {
				t.Errorf("binary=%v: no summary in Logs", binary)
			}
		}
	})
	t.Run("a poison message is parked at once", func(t *testing.T) {
		invokeWorker(t, addr, serviceBusInvocation([]byte(`{"EventName":42}`), false))
		if h := health(t, addr); h["deadLettered"] != float64(1) {
			t.Errorf("health = %v", h)
		}
	})
	t.Run("a downstream outage schedules a retry", func(t *testing.T) {
		credit.answer(func(string) int { return http.StatusServiceUnavailable }, `{}`)
		defer credit.answer(nil, `{"score":640}`)
		body, _ := canonicalSample(t)
		invokeWorker(t, addr, serviceBusInvocation(body, false))
		if h := health(t, addr); h["scheduled"] != float64(1) {
			t.Errorf("health = %v", h)
		}
	})
}

func TestCustomHandler_writes_the_hosts_invocation_id_on_every_line_of_an_invocation(t *testing.T) {
	credit, erp := newDownstream(t, `{"score":640}`), newDownstream(t, `{}`)
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	p := startProcess(t, addr, "/", flowEnv(credit, erp, "DVRELAY_DATA_DIR="+t.TempDir(), "DVRELAY_LOG_FORMAT=json",
		"FUNCTIONS_CUSTOMHANDLER_PORT="+port, "FUNCTIONS_WORKER_RUNTIME=custom"))
	post := func(path, invocationID string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("X-Azure-Functions-InvocationId", invocationID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	msg, _ := canonicalSample(t)
	post("/EventWorker", "11111111-aaaa-4bbb-8ccc-000000000001", serviceBusInvocation(msg, false))
	post("/DataverseWebhook", "11111111-aaaa-4bbb-8ccc-000000000002", envelope(sampleEvent(t), map[string][]string{"Content-Type": {"application/json"}}))

	// The intake logs its line as it answers; give the process a moment to write it.
	var worker, intake int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.out.String(), `"msg":"webhook intake"`) {
			break
		}
	}
	for _, raw := range strings.Split(p.out.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(raw), &line) != nil {
			continue
		}
		if n := strings.Count(raw, `"invocationId"`); n > 1 {
			t.Errorf("invocationId written %d times: %s", n, raw)
		}
		switch {
		case line["messageId"] == "evt-1":
			worker++
			if line["invocationId"] != "11111111-aaaa-4bbb-8ccc-000000000001" {
				t.Errorf("worker line without the invocation id: %s", raw)
			}
		case line["msg"] == "webhook intake":
			intake++
			if line["invocationId"] != "11111111-aaaa-4bbb-8ccc-000000000002" {
				t.Errorf("intake line without the invocation id: %s", raw)
			}
		}
	}
	if worker < 3 || intake != 1 {
		t.Errorf("found %d worker lines and %d intake lines, want at least 3 (steps and outcome) and 1\n%s", worker, intake, p.out.String())
	}
}
