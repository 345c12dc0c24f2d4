package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// checkError fails unless err is one of the two documented error shapes.
func checkError(t *testing.T, err error) {
	t.Helper()
	var verr *event.ValidationError
	switch {
	case errors.Is(err, event.ErrMalformed):
	case errors.As(err, &verr):
		if len(verr.Problems) == 0 {
			t.Fatalf("ValidationError without problems: %v", err)
		}
	default:
		t.Fatalf("undocumented error %T: %v", err, err)
	}
}

// FuzzParse: Parse never panics, fails only with the documented errors, and whatever it accepts
// is a canonical event the worker will accept. Seeds: testdata/fuzz/FuzzParse (the fixtures,
// the samples: custom API, Associate, SetState; a trimmed custom API, a Stage 20 synchronous
// step, an ISO 8601 OperationCreatedOn; a few broken bodies, and bodies at and past the
// pre-scan's limits: nesting, number literals, offsets).
func FuzzParse(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, sizeExceeded bool) {
		ev, err := p.Parse(body, event.Hints{SizeExceeded: sizeExceeded, ReceivedAt: time.Unix(1764054245, 0)})
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal the parsed event: %v", err)
		}
		if _, err := p.DecodeCanonical(out); err != nil {
			t.Fatalf("Parse accepted a body whose event DecodeCanonical rejects: %v\nevent: %s", err, out)
		}
	})
}

// FuzzDecodeCanonical: DecodeCanonical never panics, fails only with the documented errors, and
// an event it accepts survives json.Marshal and a second decode unchanged.
func FuzzDecodeCanonical(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := p.DecodeCanonical(body)
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := p.DecodeCanonical(out)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); string(out2) != string(out) {
			t.Fatalf("second decode changed the event:\n%s\n%s", out, out2)
		}
	})
}

// FuzzParseAttributeValue puts fuzzed JSON into one column of an otherwise valid Update, so the
// mutator spends its time on typed values instead of breaking the envelope. Same invariant as
// FuzzParse.
func FuzzParseAttributeValue(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		`{"__type":"Money:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":12500.0000}`,
		`[{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":1}]`,
		`{"__type":"EntityReference:x","Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"account","Name":null}`,
		`{"__type":"EntityCollection:x","Entities":[{"Attributes":[{"key":"a","value":"\/Date(1-0100)\/"}],"LogicalName":"activityparty"}]}`,
		`"\/Date(1724647396000+0300)\/"`, `1.0000000000`, `null`, `"text"`,
		// At and past the pre-scan's limits.
		strings.Repeat("[", 58) + strings.Repeat("]", 58), strings.Repeat("[", 59) + strings.Repeat("]", 59),
		`[1e308,-1E-308,1e309]`, `1` + strings.Repeat("0", 64), `{"__type":"Money:x","Value":1e999999}`,
		`{"__type":5,"Value":"x","Id":"y"}`,
		`{"__type":"Relationship:x","PrimaryEntityRole":null,"SchemaName":"new_a_b"}`, `["a","b"]`,
	} {
		f.Add([]byte(seed))
	}
	const head = `{"CorrelationId":"2f8b4c1e-93d7-4a5b-8e61-0c4f7a9d3b12","MessageName":"Update",` +
		`"OrganizationId":"1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1","PrimaryEntityId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",` +
		`"PrimaryEntityName":"opportunity","UserId":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22",` +
		`"InputParameters":[{"key":"Target","value":{"Attributes":[{"key":"new_value","value":`
	const tail = `}],"Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"opportunity"}}]}`
	f.Fuzz(func(t *testing.T, value []byte) {
		if !json.Valid(value) {
			return
		}
		ev, err := p.Parse([]byte(head+string(value)+tail), event.Hints{ReceivedAt: time.Unix(1764054245, 0)})
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal the parsed event: %v", err)
		}
		if _, err := p.DecodeCanonical(out); err != nil {
			t.Fatalf("accepted value %s gives an event DecodeCanonical rejects: %v", value, err)
		}
	})
}

// FuzzParseParameterValue puts fuzzed JSON into a custom API's input parameter and output
// parameter (what 1.1 carries in Parameters and OutputParameters), next to a Relationship and
// RelatedEntities, so the mutator works on parameter values. Same invariant as FuzzParse.
func FuzzParseParameterValue(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		`"SO-2025-0042"`, `true`, `40`, `0.0750`, `86.25`, `["laptops","renewal"]`, `"9e4b7c2d-5a1f-ef11-a670-000d3a5c1e22"`,
		`"\/Date(1764057600000)\/"`, `{"__type":"Money:x","Value":38850.0000}`, `{"__type":"OptionSetValue:x","Value":2}`,
		`{"__type":"EntityReference:x","Id":"a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22","LogicalName":"account","Name":"Contoso"}`,
		`{"__type":"Entity:x","Attributes":[{"key":"line1","value":"1 Harbour Road"}],"Id":"00000000-0000-0000-0000-000000000000","LogicalName":"customeraddress"}`,
		`{"__type":"EntityCollection:x","Entities":[{"Attributes":[{"key":"quantity","value":40.00000}],"Id":"6a2f9d14-0c8e-ef11-a670-000d3a5c1e22","LogicalName":"salesorderdetail"}]}`,
		`{"__type":"Relationship:x","PrimaryEntityRole":1,"SchemaName":"new_a_b"}`,
		`[{"__type":"EntityReference:x","Id":"2b8c4e61-9f3a-ef11-a670-000d3a5c1e22","LogicalName":"contact"}]`,
		`{"__type":"QueryExpression:x","ColumnSet":{"AllColumns":true}}`, `null`, `{}`,
	} {
		f.Add([]byte(seed), "Order")
		f.Add([]byte(seed), "Relationship")
		f.Add([]byte(seed), "RelatedEntities")
		f.Add([]byte(seed), "EntityMoniker")
	}
	const head = `{"CorrelationId":"0c6e2a4f-8d1b-4f3a-9e7c-5b2d1a0f9e84","MessageName":"new_OrderSubmitted",` +
		`"OrganizationId":"1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1","PrimaryEntityId":"00000000-0000-0000-0000-000000000000",` +
		`"PrimaryEntityName":"none","UserId":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","Stage":40,"Mode":1,"IsInTransaction":false,`
	f.Fuzz(func(t *testing.T, value []byte, name string) {
		if !json.Valid(value) {
			return
		}
		key, _ := json.Marshal(name)
		body := head + `"InputParameters":[{"key":` + string(key) + `,"value":` + string(value) + `},` +
			`{"key":"Relationship","value":{"__type":"Relationship:x","PrimaryEntityRole":null,"SchemaName":"new_a_b"}}],` +
			`"OutputParameters":[{"key":` + string(key) + `,"value":` + string(value) + `}]}`
		ev, err := p.Parse([]byte(body), event.Hints{ReceivedAt: time.Unix(1764054245, 0)})
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal the parsed event: %v", err)
		}
		if _, err := p.DecodeCanonical(out); err != nil {
			t.Fatalf("accepted parameter %s = %s gives an event DecodeCanonical rejects: %v", key, value, err)
		}
	})
}
