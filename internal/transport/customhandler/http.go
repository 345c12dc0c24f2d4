package customhandler

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dvrelay/dvrelay/internal/platform/oneline"
)

// DefaultHTTPBinding is the usual name of an HTTP trigger's input binding.
const DefaultHTTPBinding = "req"

// HTTPRequest is the original HTTP request an HTTP trigger invocation carries.
type HTTPRequest struct {
	Method string
	// URL is the public URL as the caller sent it, including a function key in ?code= or
	// another query secret. Log RedactedURL instead.
	URL    string
	Query  url.Values
	Header http.Header
	// Body is the request body. The host drops it when the caller sent no Content-Length
	// (chunked uploads), so an empty Body may mean "not forwarded".
	Body []byte
	// Params holds the route template values.
	Params map[string]string
}

// RedactedURL is URL as it may be logged (oneline.URL): every query value hidden, not only the
// function key in ?code=, because Dataverse's HttpQueryString auth puts its secret under whatever
// parameter name the registration chose; user info goes too.
func (r HTTPRequest) RedactedURL() string { return oneline.URL(r.URL) }

// ContentLength is the declared Content-Length header, or -1 when absent or unreadable.
func (r HTTPRequest) ContentLength() int64 {
	v := r.Header.Get("Content-Length")
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// MaxFields bounds the headers, query values and route values DecodeHTTPTrigger decodes of the
// original request, each: far above what the host forwards (its web server takes at most 100
// headers, and URLs of 8 KB), since each costs allocations, and an envelope past it did not come
// from the host.
const MaxFields = 256

// httpTrigger is Data.<binding> of an HTTP trigger invocation.
type httpTrigger struct {
	URL     string          `json:"Url"`
	Method  string          `json:"Method"`
	Query   boundedObject   `json:"Query"`
	Headers boundedObject   `json:"Headers"`
	Params  boundedObject   `json:"Params"`
	Body    json.RawMessage `json:"Body"`
}

// errTooManyFields is the decoding error of an object past its bound.
var errTooManyFields = errors.New("too many fields")

// boundedObject is a JSON object of at most MaxFields members, decoded one member at a time so
// that one past the bound stops the decoding before its cost grows with the object.
type boundedObject map[string]json.RawMessage

func (o *boundedObject) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not an object")
	}
	m := boundedObject{}
	for dec.More() {
		if len(m) == MaxFields {
			return fmt.Errorf("%w: more than %d", errTooManyFields, MaxFields)
		}
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		m[key] = v
	}
	*o = m
	return nil
}

// DecodeHTTPTrigger reads the HTTP trigger invocation posted for the binding named binding
// ("" means DefaultHTTPBinding). Header and query values are accepted as arrays (what the host
// sends for headers) or single strings. The body is accepted as text, as base64 for the
// content types the host reads as bytes (application/octet-stream, multipart/*), as an inline
// JSON value, or missing.
func DecodeHTTPTrigger(body []byte, binding string) (HTTPRequest, error) {
	if binding == "" {
		binding = DefaultHTTPBinding
	}
	inv, err := DecodeInvocation(body)
	if err != nil {
		return HTTPRequest{}, err
	}
	raw, err := inv.binding(binding)
	if err != nil {
		return HTTPRequest{}, err
	}
	var t httpTrigger
	if err := json.Unmarshal(raw, &t); err != nil {
		return HTTPRequest{}, fmt.Errorf("%w: Data.%s: %w", ErrInvocation, binding, err)
	}

	req := HTTPRequest{
		Method: strings.ToUpper(strings.TrimSpace(t.Method)),
		URL:    t.URL,
		Query:  url.Values{},
		Header: http.Header{},
		Params: map[string]string{},
	}
	for k, v := range t.Headers {
		for _, s := range stringValues(v) {
			req.Header.Add(k, s)
		}
	}
	for k, v := range t.Query {
		req.Query[k] = append(req.Query[k], stringValues(v)...)
	}
	for k, v := range t.Params {
		if s, ok := unwrapString(v); ok {
			req.Params[k] = s
		}
	}
	req.Body, err = decodeHTTPBody(t.Body, req.Header.Get("Content-Type"))
	if err != nil {
		return HTTPRequest{}, fmt.Errorf("%w: Data.%s.Body: %w", ErrInvocation, binding, err)
	}
	return req, nil
}

// stringValues reads a header or query value: an array of strings, or one string (or number).
func stringValues(raw json.RawMessage) []string {
	t := bytes.TrimSpace(raw)
	if len(t) > 0 && t[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(t, &elems); err != nil {
			return nil
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			if s, ok := unwrapOnce(e); ok {
				out = append(out, s)
			}
		}
		return out
	}
	if s, ok := unwrapOnce(t); ok {
		return []string{s}
	}
	return nil
}

// unwrapOnce decodes a JSON string or scalar literal exactly once: header values are data, and
// a value that happens to look like a JSON string must reach the consumer unchanged.
func unwrapOnce(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || isNull(t) || t[0] == '{' || t[0] == '[' {
		return "", false
	}
	if t[0] != '"' {
		return string(t), true
	}
	var s string
	if err := json.Unmarshal(t, &s); err != nil {
		return "", false
	}
	return s, true
}

// decodeHTTPBody turns Data.<binding>.Body into bytes. The host reads the body as a string for
// text content and as bytes (written as base64) for application/octet-stream and multipart.
func decodeHTTPBody(raw json.RawMessage, contentType string) ([]byte, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || isNull(t) {
		return nil, nil // the host omits the body when there was no Content-Length
	}
	if t[0] != '"' {
		// An inline JSON value: not what the host sends, but unambiguous.
		return append([]byte(nil), t...), nil
	}
	var s string
	if err := json.Unmarshal(t, &s); err != nil {
		return nil, err
	}
	if !isBinaryMediaType(contentType) {
		return []byte(s), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("binary body is not base64: %w", err)
	}
	return b, nil
}

func isBinaryMediaType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/")
}

// HTTPResponse is the answer an HTTP trigger function gives its caller.
type HTTPResponse struct {
	StatusCode int
	Header     http.Header
	// Body must be text (the host writes it as a string); JSON is.
	Body []byte
}

// httpOutput is Outputs.<binding> for an http output binding. The host parses it into its
// HttpOutputBindingResponse and writes body as given.
type httpOutput struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// invocationResult is the host's answer envelope. ReturnValue stays null: an http `$return`
// and other outputs would have their string values base64-coerced by the host, an http output
// binding (Outputs.<binding>) is not.
type invocationResult struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// WriteHTTPResponse answers an HTTP trigger invocation: 200 application/json carrying res in
// Outputs.<binding> ("" means "res"), and logs as the invocation's log lines. The status the
// caller sees is res.StatusCode, not the 200.
func WriteHTTPResponse(w http.ResponseWriter, binding string, res HTTPResponse, logs []string) error {
	if binding == "" {
		binding = "res"
	}
	out := httpOutput{StatusCode: res.StatusCode, Headers: map[string]string{}, Body: string(res.Body)}
	for k, vs := range res.Header {
		// The host's header map holds one string per name.
		out.Headers[k] = strings.Join(vs, ", ")
	}
	return writeResult(w, invocationResult{Outputs: map[string]any{binding: out}, Logs: logs})
}

// WriteResult answers a successful non-HTTP invocation (a Service Bus trigger): 200
// application/json with no outputs. For Service Bus the host then completes the message.
func WriteResult(w http.ResponseWriter, logs []string) error {
	return writeResult(w, invocationResult{Outputs: map[string]any{}, Logs: logs})
}

func writeResult(w http.ResponseWriter, r invocationResult) error {
	if r.Logs == nil {
		r.Logs = []string{}
	}
	body, err := json.Marshal(r)
	if err != nil {
		writeFailure(w)
		return fmt.Errorf("encode invocation result: %w", err)
	}
	// Without an explicit JSON content type the host fails the invocation.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	return err
}

// WriteFailure fails the invocation: the host treats any non-2xx as a failure and, for Service
// Bus, abandons the message so it is delivered again at once. The host discards the body of a
// failed invocation, Logs included, so the reason goes to log (the host captures the process
// output) with attrs, which must hold ids only.
func WriteFailure(ctx context.Context, w http.ResponseWriter, log *slog.Logger, err error, attrs ...slog.Attr) {
	log.LogAttrs(ctx, slog.LevelError, "invocation failed", append(attrs, slog.String("error", err.Error()))...)
	writeFailure(w)
}

func writeFailure(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(`{"Outputs":{},"Logs":[],"ReturnValue":null}`))
}
