package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
	"github.com/dvrelay/dvrelay/internal/platform/retry"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
)

// maxResponseBody bounds how much of a downstream answer is read and kept for later steps.
const maxResponseBody = 1 << 20

// maxErrorAnswer bounds how much of a refusal is read: its first 512 bytes are kept, after
// leading white space.
const maxErrorAnswer = 4 << 10

// httpDecl is an http step:
//
//	{"name": "credit-score", "type": "http", "url": "${DVRELAY_CREDIT_URL}", "timeout": "10s",
//	 "body": {"select": ["EventId", "RecordId", "Attributes.estimatedvalue"]},
//	 "expect": {"score": "number"}}
//
// The body is the canonical event, or with select only the listed paths of it, nested as in
// the event ({"RecordId": …, "Attributes": {"estimatedvalue": …}}); absent paths are left out.
// A select entry $steps.<step>.<path> adds a field of an earlier step's result, nested under
// "steps" ({"steps": {"read-account": {"name": …}}}): how a record read reaches the downstream.
// expect names fields the JSON answer must hold, with their JSON type.
type httpDecl struct {
	URL  string `json:"url"`
	Body *struct {
		Select []string `json:"select"`
	} `json:"body"`
	Expect map[string]string `json:"expect"`
}

type httpStep struct {
	name    string
	setting string // the URL as declared, ${SETTING} unexpanded: safe to show
	url     string // may carry a function key: never logged
	client  *http.Client
	now     func() time.Time
	selects []bodyField
	expect  map[string]string
}

// bodyField is one entry of body.select: where it goes in the body, and for an earlier step's
// field the reference to resolve (nil for an event path).
type bodyField struct {
	path []string
	step *valueRef
}

func newHTTPStep(decl StepDecl, env BuildEnv) (Step, error) {
	var d httpDecl
	if err := json.Unmarshal(decl.Raw, &d); err != nil {
		return nil, err
	}
	target, err := env.Expand(d.URL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &FieldError{Path: []string{"url"}, Err: badURL(d.URL, target)}
	}
	s := &httpStep{name: decl.Name, setting: d.URL, url: target, client: env.HTTPClient, now: env.Now, expect: d.Expect}
	if d.Body != nil {
		for i, sel := range d.Body.Select {
			at := []string{"body", "select", strconv.Itoa(i)}
			if strings.HasPrefix(sel, "$steps.") {
				quoted, _ := json.Marshal(sel)
				ref, err := parseValue(quoted, decl.Earlier)
				var skip *SkipError
				switch {
				case errors.As(err, &skip):
					return nil, err
				case err != nil:
					return nil, &FieldError{Path: at, Err: err}
				}
				s.selects = append(s.selects, bodyField{path: append([]string{"steps", ref.step}, ref.path...), step: &ref})
				continue
			}
			path := strings.Split(sel, ".")
			if !isCanonicalField(path[0]) {
				return nil, &FieldError{Path: at,
					Err: fmt.Errorf("%q is not a field of the canonical event or $steps.<step>.<field>", sel)}
			}
			s.selects = append(s.selects, bodyField{path: path})
		}
	}
	return s, nil
}

// badURL says why an http step's url is not one, naming the setting it came from. The value
// is shown without its query, fragment and user information, where a key or password may be.
func badURL(declared, expanded string) error {
	why := "is not an absolute http(s) URL"
	if !strings.Contains(expanded, "://") {
		why = "lacks http:// or https:// (e.g. http://" + strings.TrimPrefix(strings.TrimPrefix(unsecretValue(expanded), "//"), "/") + ")"
	}
	refs := settingRef.FindAllStringSubmatch(declared, -1)
	switch {
	case len(refs) == 0:
		return fmt.Errorf("%s %s", declared, why)
	case len(refs) == 1 && refs[0][0] == declared:
		return fmt.Errorf("setting %s is %q, which %s", refs[0][1], unsecretValue(expanded), why)
	}
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r[1]
	}
	return fmt.Errorf("%s (settings %s) comes to %q, which %s", declared, strings.Join(names, ", "), unsecretValue(expanded), why)
}

// unsecretValue is a setting value that may not parse as a URL, without what may be secret: user information, query and fragment.
func unsecretValue(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		scheme, rest = "", s
	}
	host, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	out := host
	if path != "" || strings.Contains(rest, "/") {
		out += "/" + path
	}
	if hasScheme {
		out = scheme + "://" + out
	}
	return out
}

// isCanonicalField reports whether name is a top-level JSON name of event.Event.
func isCanonicalField(name string) bool {
	t := reflect.TypeFor[event.Event]()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name && tag != "-" {
			return true
		}
	}
	return false
}

// HeaderEventTimestamp carries the event's Timestamp (when Dataverse ran the operation, RFC 3339)
// to an http step. Dataverse may post a record's events out of that order, and the worker keeps
// the order it accepted them in, so a downstream that must never apply an older change over a
// newer one compares this with the timestamp it last applied for the record.
const HeaderEventTimestamp = "X-Dvrelay-Event-Timestamp"

func (s *httpStep) Run(ctx context.Context, r *Run) error {
	body, err := s.body(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return MarkPermanent(fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", r.Event.EventID)
	req.Header.Set("X-Correlation-ID", r.Event.CorrelationID)
	if r.Event.Timestamp != "" {
		req.Header.Set(HeaderEventTimestamp, r.Event.Timestamp)
	}
	if sc, ok := tracecontext.FromContext(ctx); ok {
		req.Header.Set(tracecontext.HeaderTraceparent, sc.String())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, query string and all; keep only the cause (a refused
		// redirect, a certificate the handshake rejected, a timeout, ...).
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("POST %s: %w", s.setting, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The answer's start says why (an ERP's {"message": …}); it goes to the dead letter
		// with the status. A body that cannot be read to the end still shows what came.
		answer, _, _ := outbound.ReadLimited(resp.Body, maxErrorAnswer)
		return fmt.Errorf("POST %s: %w", s.setting, WithAnswer(&StatusError{
			Status:     resp.StatusCode,
			RetryAfter: retry.ParseRetryAfter(resp.Header.Get("Retry-After"), s.now()),
		}, answer))
	}
	raw, truncated, err := outbound.ReadLimited(resp.Body, maxResponseBody)
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", s.setting, err)
	}
	if truncated {
		// The call succeeded downstream; only an answer the route relies on makes a cut one fatal.
		if len(s.expect) > 0 {
			return fmt.Errorf("POST %s: %w: answer is larger than %d bytes", s.setting, ErrInvalidResponse, maxResponseBody)
		}
		raw = nil
	}
	answer, err := s.decodeAnswer(raw)
	if err != nil {
		return fmt.Errorf("POST %s: %w", s.setting, err)
	}
	r.Keep(s.name, answer)
	return nil
}

func (s *httpStep) body(r *Run) ([]byte, error) {
	if s.selects == nil {
		return json.Marshal(r.Event)
	}
	out := make(map[string]any)
	for _, sel := range s.selects {
		path := sel.path
		var v any
		var ok bool
		if sel.step != nil {
			v, ok = sel.step.resolve(r)
		} else {
			v, ok = r.EventValue(path)
		}
		if !ok {
			continue
		}
		m := out
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = make(map[string]any)
				m[p] = next
			}
			m = next
		}
		m[path[len(path)-1]] = v
	}
	return json.Marshal(out)
}

// decodeAnswer parses a 2xx answer and checks the expected fields. An answer without
// expectations may be empty or not JSON; it is then kept as nil.
func (s *httpStep) decodeAnswer(raw []byte) (any, error) {
	var v any
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			if len(s.expect) > 0 {
				return nil, fmt.Errorf("%w: answer is not JSON", ErrInvalidResponse)
			}
			return nil, nil
		}
	}
	for _, field := range sortedKeys(s.expect) {
		want := s.expect[field]
		got, ok := walk(v, strings.Split(field, "."))
		if !ok || jsonType(got) != want {
			return nil, fmt.Errorf("%w: answer has no %s field %q", ErrInvalidResponse, want, field)
		}
	}
	return v, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	}
	return "other"
}
