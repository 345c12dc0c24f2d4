package customhandler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
)

func TestDecodeHTTPTrigger_reads_the_host_fixture(t *testing.T) {
	r, err := customhandler.DecodeHTTPTrigger(readFixture(t, "http-invocation.json"), "req")
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != http.MethodPost || r.URL != "https://contoso-fn.azurewebsites.net/api/webhooks/github?code=REDACTED" {
		t.Errorf("Method %q URL %q", r.Method, r.URL)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.Header.Get("x-github-delivery"); got != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
		t.Errorf("header lookup is not canonical: %q", got)
	}
	if r.Query.Get("code") != "REDACTED" || r.Params["source"] != "github" {
		t.Errorf("Query %v Params %v", r.Query, r.Params)
	}
	if want := `{"ref":"refs/heads/main","after":"9fceb02","repository":{"full_name":"contoso/app"}}`; string(r.Body) != want {
		t.Errorf("Body = %s", r.Body)
	}
	if r.ContentLength() != 84 || int(r.ContentLength()) != len(r.Body) {
		t.Errorf("ContentLength = %d, body %d bytes", r.ContentLength(), len(r.Body))
	}
}

// httpEnvelope builds an HTTP trigger invocation the way the host does.
func httpEnvelope(t *testing.T, req map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Data": map[string]any{"req": req}, "Metadata": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeHTTPTrigger_accepts_the_body_forms_the_host_sends(t *testing.T) {
	cases := []struct {
		name    string
		ctype   string
		body    any // omitted when nil
		want    string
		wantErr bool
	}{
		{"text JSON", "application/json", `{"a":"é"}`, `{"a":"é"}`, false},
		{"missing without Content-Length", "application/json", nil, "", false},
		{"base64 for octet-stream", "application/octet-stream", "AAEC/w==", "\x00\x01\x02\xff", false},
		{"base64 for multipart", "multipart/form-data; boundary=x", "aGk=", "hi", false},
		{"text that looks like base64 stays text", "application/json", "dGVzdA==", "dGVzdA==", false},
		{"inline object", "application/json", map[string]any{"a": 1}, `{"a":1}`, false},
		{"octet-stream that is not base64", "application/octet-stream", "not base64!", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := map[string]any{"Method": "POST", "Url": "https://x/api/y", "Headers": map[string]any{"Content-Type": []string{tc.ctype}}}
			if tc.body != nil {
				req["Body"] = tc.body
			}
			r, err := customhandler.DecodeHTTPTrigger(httpEnvelope(t, req), "")
			if tc.wantErr {
				if !errors.Is(err, customhandler.ErrInvocation) {
					t.Fatalf("err = %v, want ErrInvocation", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Body) != tc.want {
				t.Errorf("Body = %q, want %q", r.Body, tc.want)
			}
		})
	}
}

func TestDecodeHTTPTrigger_tolerates_single_string_header_and_query_values(t *testing.T) {
	env := httpEnvelope(t, map[string]any{
		"method":  "post",
		"url":     "https://x/api/y",
		"headers": map[string]any{"X-One": "1", "X-Many": []string{"a", "b"}, "X-Num": 7},
		"query":   map[string]any{"a": "1", "b": []string{"2", "3"}},
	})
	r, err := customhandler.DecodeHTTPTrigger(env, "req")
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "POST" {
		t.Errorf("Method = %q", r.Method)
	}
	if r.Header.Get("X-One") != "1" || !reflect.DeepEqual(r.Header.Values("X-Many"), []string{"a", "b"}) || r.Header.Get("X-Num") != "7" {
		t.Errorf("Header = %v", r.Header)
	}
	if r.Query.Get("a") != "1" || !reflect.DeepEqual(r.Query["b"], []string{"2", "3"}) {
		t.Errorf("Query = %v", r.Query)
	}
	if r.ContentLength() != -1 {
		t.Errorf("ContentLength = %d, want -1 with no header", r.ContentLength())
	}
}

func TestHTTPRequest_RedactedURL_hides_the_function_key_and_every_other_query_secret(t *testing.T) {
	// Dataverse's HttpQueryString auth sends its secret under any parameter name the
	// registration chose, so no list of known names is enough: every value goes.
	cases := []struct{ url, want string }{
		{"https://app.example/api/dataverse/webhook?code=k3y-value&x=1", "https://app.example/api/dataverse/webhook?code=REDACTED&x=REDACTED"},
		{"https://app.example/api/dataverse/webhook?Code=k3y-value", "https://app.example/api/dataverse/webhook?Code=REDACTED"},
		{"https://app.example/api/dataverse/webhook?x-dv-secret=k3y-value", "https://app.example/api/dataverse/webhook?x-dv-secret=REDACTED"},
		{"https://user:k3y-value@app.example/api/dataverse/webhook", "https://app.example/api/dataverse/webhook"},
		{"https://app.example/api/dataverse/webhook", "https://app.example/api/dataverse/webhook"},
		{"https://app.example/%zz?code=k3y-value", "https://app.example/%zz"},
		{"https://user:k3y-value@app.example/%zz?code=x", "https://app.example/%zz"},
	}
	for _, tc := range cases {
		got := customhandler.HTTPRequest{URL: tc.url}.RedactedURL()
		if got != tc.want {
			t.Errorf("RedactedURL(%q) = %q, want %q", tc.url, got, tc.want)
		}
		if strings.Contains(got, "k3y-value") {
			t.Errorf("RedactedURL(%q) leaks the key", tc.url)
		}
	}
}

func TestDecodeHTTPTrigger_rejects_unreadable_invocations(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":          `nope`,
		"no req binding":    `{"Data":{}}`,
		"req is not object": `{"Data":{"req":"\"x\""}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := customhandler.DecodeHTTPTrigger([]byte(body), "req"); !errors.Is(err, customhandler.ErrInvocation) {
				t.Errorf("err = %v, want ErrInvocation", err)
			}
		})
	}
}

// shapeOf decodes JSON into generic values so two documents can be compared structurally.
func shapeOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

func TestWriteHTTPResponse_writes_the_envelope_the_host_reads(t *testing.T) {
	rec := httptest.NewRecorder()
	err := customhandler.WriteHTTPResponse(rec, "res", customhandler.HTTPResponse{
		StatusCode: 202,
		Header:     http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"evt_01HZX9"}},
		Body:       []byte(`{"accepted":true,"eventId":"evt_01HZX9"}`),
	}, []string{"accepted github push evt_01HZX9"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK {
		t.Errorf("status = %d, want 200 (the caller's status travels inside)", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got, want := shapeOf(t, rec.Body.Bytes()), shapeOf(t, readFixture(t, "http-response.json")); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestWriteHTTPResponse_keeps_an_empty_body_a_string_and_joins_repeated_headers(t *testing.T) {
	rec := httptest.NewRecorder()
	err := customhandler.WriteHTTPResponse(rec, "", customhandler.HTTPResponse{
		StatusCode: 204,
		Header:     http.Header{"Vary": {"Accept", "Origin"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Outputs":{"res":{"statusCode":204,"headers":{"Vary":"Accept, Origin"},"body":""}},"Logs":[],"ReturnValue":null}`
	if got := rec.Body.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestWriteResult_writes_the_service_bus_success_envelope(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := customhandler.WriteResult(rec, []string{"processed evt_01HZX9 in 84ms"}); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got, want := shapeOf(t, rec.Body.Bytes()), shapeOf(t, readFixture(t, "servicebus-response.json")); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}

	rec = httptest.NewRecorder()
	_ = customhandler.WriteResult(rec, nil)
	if !strings.Contains(rec.Body.String(), `"Logs":[]`) {
		t.Errorf("nil logs must be an empty array: %s", rec.Body.String())
	}
}

func TestWriteFailure_answers_500_and_logs_the_reason_elsewhere(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	rec := httptest.NewRecorder()
	customhandler.WriteFailure(context.Background(), rec, log, errors.New("dead-letter send failed"), slog.String("eventId", "evt-1"))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status = %d", rec.Code)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type = %q", rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(logs.String(), "dead-letter send failed") || !strings.Contains(logs.String(), `"eventId":"evt-1"`) {
		t.Errorf("logs = %s", logs.String())
	}
}

func TestReady_answers_the_host_probe_at_once(t *testing.T) {
	srv := httptest.NewServer(customhandler.Ready())
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("status = %d", res.StatusCode)
	}
}

func TestDecodeHTTPTrigger_refuses_more_headers_than_MaxFields(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"Data":{"req":{"Method":"POST","Headers":{`)
	for i := range customhandler.MaxFields + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"X-H-%d":["v"]`, i)
	}
	b.WriteString(`}}}}`)
	_, err := customhandler.DecodeHTTPTrigger([]byte(b.String()), "req")
	if !errors.Is(err, customhandler.ErrInvocation) {
		t.Errorf("err = %v, want ErrInvocation", err)
	}
	ok := strings.Replace(b.String(), fmt.Sprintf(`,"X-H-%d":["v"]`, customhandler.MaxFields), "", 1)
	if r, err := customhandler.DecodeHTTPTrigger([]byte(ok), "req"); err != nil || len(r.Header) != customhandler.MaxFields {
		t.Errorf("MaxFields headers: %d decoded, %v", len(r.Header), err)
	}
}
