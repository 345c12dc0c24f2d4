package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// receivedAt is the intake clock reading the tests pass in Hints.
var receivedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newParser(t testing.TB) *event.Parser {
	t.Helper()
	p, err := event.NewParser()
	if err != nil {
		t.Fatalf("NewParser: %v", err)
	}
	return p
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	return readFile(t, filepath.Join("testdata", "dataverse", name))
}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	return readFile(t, filepath.Join("..", "..", "samples", name))
}

func parse(t *testing.T, p *event.Parser, body []byte, h event.Hints) event.Event {
	t.Helper()
	ev, err := p.Parse(body, h)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return ev
}

// mutate decodes body (numbers kept as text), lets change edit it, and encodes it again.
func mutate(t *testing.T, body []byte, change func(m map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// target returns the Target entity of a RemoteExecutionContext decoded by mutate.
func target(m map[string]any) map[string]any {
	return m["InputParameters"].([]any)[0].(map[string]any)["value"].(map[string]any)
}

// pointers returns the pointers of a *ValidationError, failing the test for any other error.
func pointers(t *testing.T, err error) []string {
	t.Helper()
	var verr *event.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got error %v (%T), want *event.ValidationError", err, err)
	}
	var ps []string
	for _, p := range verr.Problems {
		ps = append(ps, p.Pointer)
	}
	slices.Sort(ps)
	return ps
}

// attr renders one canonical attribute as compact JSON text.
func attr(t *testing.T, ev event.Event, name string) string {
	t.Helper()
	raw, ok := ev.Attributes[name]
	if !ok {
		t.Fatalf("attribute %q missing; have %v", name, keys(ev.Attributes))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("attribute %q is not JSON: %v", name, err)
	}
	return buf.String()
}

func keys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

const (
	updateHead = `{"CorrelationId":"2f8b4c1e-93d7-4a5b-8e61-0c4f7a9d3b12","MessageName":"Update",` +
		`"OrganizationId":"1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1","PrimaryEntityId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",` +
		`"PrimaryEntityName":"opportunity","UserId":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22",` +
		`"InputParameters":[{"key":"Target","value":{"Attributes":[`
	updateTail = `],"Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"opportunity"}}]}`
)

// updateWith is a valid Update whose Target carries the given Attributes list items.
func updateWith(attributes ...string) []byte {
	return []byte(updateHead + strings.Join(attributes, ",") + updateTail)
}

// pluginWith is a valid plugin event with the given ChangedFields items.
func pluginWith(changedFields ...string) []byte {
	return []byte(`{"EventName":"OpportunityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",` +
		`"TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z","ChangedFields":[` + strings.Join(changedFields, ",") + `]}`)
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// nested wraps inner in depth arrays.
func nested(depth int, inner string) string {
	return strings.Repeat("[", depth) + inner + strings.Repeat("]", depth)
}

// validationError fails the test unless err is a *event.ValidationError.
func validationError(t *testing.T, err error) *event.ValidationError {
	t.Helper()
	var verr *event.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got error %v (%T), want *event.ValidationError", err, err)
	}
	return verr
}

// allocs is the average number of allocations one Parse of body makes.
func allocs(p *event.Parser, body []byte) float64 {
	return testing.AllocsPerRun(3, func() { _, _ = p.Parse(body, event.Hints{ReceivedAt: receivedAt}) })
}

// decodeAllocs is the number of allocations decoding body into generic JSON once makes: what
// building its tree costs.
func decodeAllocs(t *testing.T, body []byte) float64 {
	t.Helper()
	return testing.AllocsPerRun(3, func() {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	})
}

// A valid attribute and a valid field name: thousands of them pad a hostile body, costing
// thousands of allocations to decode that a body refused by the pre-scan does not pay.
const (
	validAttribute = `{"key":"name","value":"Contoso"}`
	validField     = `"name"`
)

// mutateRaw inserts member (raw JSON "name":value) as the first member of the object body.
func mutateRaw(t *testing.T, body []byte, member string) []byte {
	t.Helper()
	if len(body) == 0 || body[0] != '{' {
		t.Fatalf("not an object: %.20s", body)
	}
	return []byte("{" + member + "," + string(body[1:]))
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
