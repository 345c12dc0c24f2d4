package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xeipuuv/gojsonschema"
)

// The Go checks of record data stand in for the item definitions of the embedded schemas. These
// tests hold them to the schemas: for each body, the problems Parse's way (envelope through the
// validator, items through the checker) must equal the problems of the whole schema applied to
// the whole body, pointer for pointer and word for word.

const (
	diffUpdateHead = `{"CorrelationId":"2f8b4c1e-93d7-4a5b-8e61-0c4f7a9d3b12","MessageName":"Update",` +
		`"OrganizationId":"1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1","PrimaryEntityId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",` +
		`"PrimaryEntityName":"opportunity","UserId":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22",`
	diffPluginHead = `{"EventName":"OpportunityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",` +
		`"TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z","ChangedFields":[`
)

// Places a fuzzed or hand-written JSON value can go in a body.
func asAttributeValue(v string) string {
	return diffUpdateHead + `"InputParameters":[{"key":"Target","value":{"Attributes":[{"key":"new_value","value":` + v +
		`}],"Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"opportunity"}}]}`
}

func asInputParameter(v string) string { return diffUpdateHead + `"InputParameters":[` + v + `]}` }

func asImage(v string) string {
	return diffUpdateHead + `"InputParameters":[],"PostEntityImages":[` + v + `],"PreEntityImages":[` + v + `]}`
}

func asChangedField(v string) string { return diffPluginHead + v + `]}` }

// asParameterValue puts v as the value of an input parameter other than Target and of an output
// parameter.
func asParameterValue(v string) string {
	return diffUpdateHead + `"InputParameters":[{"key":"new_Input","value":` + v + `}],` +
		`"OutputParameters":[{"key":"new_Output","value":` + v + `}]}`
}

// asStepMembers puts v as Stage, Mode and IsInTransaction of a RemoteExecutionContext.
func asStepMembers(v string) string {
	return diffUpdateHead + `"InputParameters":null,"Stage":` + v + `,"Mode":` + v + `,"IsInTransaction":` + v + `}`
}

// asCanonicalStepMembers puts v as Stage, Mode and IsInTransaction of a canonical event.
func asCanonicalStepMembers(v string) string {
	return `{"SchemaVersion":"1.1","EventId":"0f8e3a52-4b8e-5d61-9a0c-1d2e3f405162","CorrelationId":"c","EventName":"X",` +
		`"TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z","Source":"dataverse-webhook",` +
		`"Stage":` + v + `,"Mode":` + v + `,"IsInTransaction":` + v + `}`
}

func asOutputParameter(v string) string {
	return diffUpdateHead + `"InputParameters":null,"OutputParameters":[` + v + `]}`
}

type diffCase struct {
	name    string
	schema  func(p *Parser) *gojsonschema.Schema
	lists   []string // the members whose items the checker reads
	members []string // the members the checker reads whole
	check   func(c *checker, top map[string]any)
}

var (
	remoteCase    = diffCase{"remote", func(p *Parser) *gojsonschema.Schema { return p.remote }, remoteLists(), stepMembers(), (*checker).remote}
	pluginCase    = diffCase{"plugin", func(p *Parser) *gojsonschema.Schema { return p.plugin }, []string{"ChangedFields"}, nil, (*checker).plugin}
	canonicalCase = diffCase{"canonical", func(p *Parser) *gojsonschema.Schema { return p.canonical }, nil, stepMembers(), (*checker).canonical}
)

// verdicts returns the problems of the whole schema on the whole body, and Parse's way.
func verdicts(t testing.TB, p *Parser, dc diffCase, body string) (whole, split []FieldProblem) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	var all problemList
	validate(dc.schema(p), top, &all)
	var parts problemList
	validate(dc.schema(p), envelope(top, dc.lists, dc.members...), &parts)
	dc.check(&checker{problems: &parts}, top)
	return newValidationError("", &all).Problems, newValidationError("", &parts).Problems
}

func assertSameVerdict(t testing.TB, p *Parser, dc diffCase, body string) {
	t.Helper()
	whole, split := verdicts(t, p, dc, body)
	if !slices.Equal(whole, split) {
		t.Errorf("the schema and the Go checks disagree on %s\nschema: %+v\ngo:     %+v", body, whole, split)
	}
}

func TestRecordChecks_agree_with_the_schema_on_the_fixtures_and_samples(t *testing.T) {
	p := newTestParser(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "dataverse", "*.json"))
	samples, _ := filepath.Glob(filepath.Join("..", "..", "samples", "*.json"))
	files = append(files, samples...)
	if len(files) < 11 {
		t.Fatalf("found %d fixtures and samples", len(files))
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dc := remoteCase
		if strings.Contains(f, "plugin") {
			dc = pluginCase
		}
		whole, split := verdicts(t, p, dc, string(body))
		if len(whole) != 0 || !slices.Equal(whole, split) {
			t.Errorf("%s: schema %+v, go %+v", f, whole, split)
		}
	}
}

func TestRecordChecks_agree_with_the_schema_on_each_broken_item(t *testing.T) {
	p := newTestParser(t)
	long := strings.Repeat("a", 129)
	attributeValues := []string{
		`{"__type":"Money:x"}`,
		`{"__type":"Money:x","Value":"12500"}`,
		`{"__type":"Money:x","Value":1.0}`,
		`{"__type":"OptionSetValue:x","Value":null}`,
		`{"__type":"OptionSetValue:x","Value":2.5}`,
		`{"__type":"EntityReference:x"}`,
		`{"__type":"EntityReference:x","Id":"me","LogicalName":"Account","Name":5}`,
		`{"__type":"EntityReference:x","Id":1.0,"LogicalName":1.5,"Name":true}`,
		`{"__type":"EntityReference:x","Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"` + long + `"}`,
		`{"__type":"EntityReference:x","Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","LogicalName":"A` + long + `"}`,
		`{"__type":"EntityCollection:x"}`,
		`{"__type":"EntityCollection:x","Entities":{}}`,
		`{"__type":"EntityCollection:x","Entities":[1,{},null]}`,
		`{"__type":"EntityCollection:x","Entities":[{"Attributes":[1,{"key":"A"},{"value":{"__type":"Money:x"}}],"LogicalName":"x","Id":"y"}]}`,
		`{"__type":"Entity:x"}`,
		`{"__type":"Entity:x","Attributes":{},"LogicalName":5}`,
		`{"__type":5}`,
		`{"__type":null,"Value":"x","Id":"y"}`,
		`{"__type":["a"],"Entities":[1],"Attributes":[2]}`,
		`{"__type":"Unknown:x","Value":"s"}`,
		`{"__type":"Money"}`,
		`{"__type":"entity:x"}`,
		`[{"__type":"OptionSetValue:x"},[{"__type":"Money:x","Value":true}],1,"s",null]`,
		`{"no_type":1}`,
		`"/Date(1)/"`, `null`, `1e308`,
	}
	inputParameters := []string{
		`1`, `null`, `{}`, `[]`,
		`{"key":5,"value":1}`,
		`{"value":{"Attributes":[]}}`,
		`{"key":"Target","value":5}`,
		`{"key":"Other","value":5}`,
		`{"key":"Target","value":{"Id":"x"}}`,
		`{"key":"Target","value":{"Attributes":5,"LogicalName":"a"}}`,
		`{"key":"Target","value":{"Attributes":[{"key":"` + long + `","value":{"__type":"Entity:x","Attributes":[{}]}}],"LogicalName":"a"}}`,
	}
	images := []string{
		`null`, `{"key":1}`, `{"key":"PostImage","value":null}`,
		`{"key":"PostImage","value":{"Attributes":[{"key":"a","value":{"__type":"Money:x"}}]}}`,
	}
	changedFields := []string{`1`, `null`, `"Name"`, `"` + long + `"`, `"A` + long + `"`, `{}`, `"ok"`}

	for _, v := range attributeValues {
		assertSameVerdict(t, p, remoteCase, asAttributeValue(v))
	}
	for _, v := range inputParameters {
		assertSameVerdict(t, p, remoteCase, asInputParameter(v))
	}
	for _, v := range images {
		assertSameVerdict(t, p, remoteCase, asImage(v))
	}
	for _, v := range changedFields {
		assertSameVerdict(t, p, pluginCase, asChangedField(v))
	}
	// The envelope's own rules still apply to the lists as wholes.
	assertSameVerdict(t, p, remoteCase, diffUpdateHead+`"InputParameters":{"Target":null},"PostEntityImages":"x"}`)
	assertSameVerdict(t, p, pluginCase, `{"EventName":"OpportunityUpdated","RecordId":"x","TriggeredBy":"x","Timestamp":"x","ChangedFields":"x"}`)
}

// FuzzRecordChecks puts fuzzed JSON into each place whose items the Go checks read, and holds
// their verdict to the schema's. Values the pre-scan refuses never reach either.
func FuzzRecordChecks(f *testing.F) {
	for _, seed := range []string{
		`{"__type":"Money:x","Value":"1"}`, `{"__type":"EntityReference:x","Id":"me"}`,
		`{"__type":"EntityCollection:x","Entities":[{"Attributes":[1]}]}`, `{"__type":5}`,
		`{"key":"Target","value":{"Id":"x"}}`, `[{"__type":"OptionSetValue:x"}]`, `"Name"`, `1.0`,
		`{"__type":"Relationship:x","SchemaName":"a b"}`, `{"__type":"Relationship:x"}`,
		`[{"__type":"EntityReference:x","Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8"}]`,
		`{"key":"EntityMoniker","value":{"__type":"EntityReference:x","Id":"me","LogicalName":"account"}}`,
		`{"key":5,"value":{"__type":"Money:x"}}`, `["a","b"]`, `40`, `1e1`, `-0`, `0.0`, `true`,
	} {
		f.Add([]byte(seed))
	}
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		if !json.Valid(value) || bytes.ContainsAny(value, "\x00") {
			return
		}
		v := string(value)
		for _, c := range []struct {
			dc   diffCase
			body string
		}{
			{remoteCase, asAttributeValue(v)},
			{remoteCase, asInputParameter(v)},
			{remoteCase, asImage(v)},
			{remoteCase, asParameterValue(v)},
			{remoteCase, asOutputParameter(v)},
			{remoteCase, asStepMembers(v)},
			{canonicalCase, asCanonicalStepMembers(v)},
			{pluginCase, asChangedField(v)},
		} {
			if scan := prescan([]byte(c.body)); !scan.wellFormed || !scan.problems.empty() {
				continue
			}
			whole, split := verdicts(t, p, c.dc, c.body)
			if len(whole) >= maxProblems || len(split) >= maxProblems {
				continue // lists cut at maxProblems need not be cut at the same place
			}
			if !slices.Equal(whole, split) {
				t.Fatalf("the schema and the Go checks disagree on %s\nschema: %+v\ngo:     %+v", c.body, whole, split)
			}
		}
	})
}

func newTestParser(t testing.TB) *Parser {
	t.Helper()
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecordChecks_agree_with_the_schema_on_each_broken_parameter(t *testing.T) {
	p := newTestParser(t)
	long := strings.Repeat("a", 257)
	values := []string{
		`{"__type":"Relationship:x"}`,
		`{"__type":"Relationship:x","SchemaName":5}`,
		`{"__type":"Relationship:x","SchemaName":"new account"}`,
		`{"__type":"Relationship:x","SchemaName":"1new"}`,
		`{"__type":"Relationship:x","SchemaName":"` + long + `"}`,
		`{"__type":"Relationship:x","SchemaName":"` + long + ` "}`,
		`{"__type":"Relationship:x","SchemaName":"new_account_contact","PrimaryEntityRole":0}`,
		`{"__type":"Relationship","SchemaName":5}`,
		`{"__type":5,"SchemaName":5}`,
		`[{"__type":"EntityReference:x","Id":"me","LogicalName":"contact"},{"__type":"EntityReference:x"}]`,
		`["a",1,null,{"Id":"me"}]`,
		`{"__type":"Entity:x","Attributes":[],"Id":"00000000-0000-0000-0000-000000000000"}`,
		`{"__type":"EntityCollection:x","Entities":[{"Attributes":[{"key":"a","value":{"__type":"Money:x"}}],"LogicalName":"x"}]}`,
		`{"__type":"Money:x","Value":"1"}`, `"/Date(1)/"`, `true`, `null`,
	}
	for _, v := range values {
		assertSameVerdict(t, p, remoteCase, asParameterValue(v))
	}
	inputs := []string{
		`{"key":5,"value":{"__type":"Money:x"}}`,
		`{"key":null,"value":{"__type":"Relationship:x"}}`,
		`{"key":"EntityMoniker","value":{"__type":"EntityReference:x","Id":"me","LogicalName":"account"}}`,
		`{"key":"Target","value":{"__type":"Relationship:x"}}`,
	}
	for _, v := range inputs {
		assertSameVerdict(t, p, remoteCase, asInputParameter(v))
	}
	outputs := []string{`1`, `null`, `{}`, `{"key":5}`, `{"key":"id","value":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8"}`, `{"value":{"__type":"OptionSetValue:x"}}`}
	for _, v := range outputs {
		assertSameVerdict(t, p, remoteCase, asOutputParameter(v))
	}
	assertSameVerdict(t, p, remoteCase, diffUpdateHead+`"InputParameters":[],"OutputParameters":{"id":1}}`)
}

func TestStepChecks_agree_with_the_schemas(t *testing.T) {
	p := newTestParser(t)
	for _, v := range []string{
		`10`, `20`, `40`, `0`, `1`, `30`, `2`, `-1`, `10.0`, `1e1`, `4E1`, `-0`, `0.0`, `0.5`, `1e-1`, `400e-1`,
		`99999999999999999999`, `"40"`, `null`, `true`, `false`, `[]`, `{}`,
	} {
		assertSameVerdict(t, p, remoteCase, asStepMembers(v))
		assertSameVerdict(t, p, canonicalCase, asCanonicalStepMembers(v))
	}
}

// FuzzChecksAgreeWithSchema is the differential test of the whole rule set: for any body, and
// for each kind of payload (RemoteExecutionContext, plugin event, canonical event), the problems
// found the way Parse and DecodeCanonical find them (the schema on the envelope, Go on the items
// and step members) are the problems the whole schema finds on the whole body, pointer for pointer
// and word for word. So the schema files stay the contract, and a rule changed on one side alone
// fails here. Its seeds are every fixture and every seed of the other fuzz targets (testdata), so
// a plain go test runs them; go test -fuzz FuzzChecksAgreeWithSchema searches further.
func FuzzChecksAgreeWithSchema(f *testing.F) {
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "dataverse", "*.json"))
	for _, name := range fixtures {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, dir := range []string{"FuzzParse", "FuzzDecodeCanonical"} {
		seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, name := range seeds {
			f.Add(firstBytesOfSeed(f, name))
		}
	}
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if scan := prescan(body); !scan.wellFormed || !scan.object || !scan.problems.empty() || bytes.ContainsAny(body, "\x00") {
			return
		}
		for _, dc := range []diffCase{remoteCase, pluginCase, canonicalCase} {
			whole, split := verdicts(t, p, dc, string(body))
			if len(whole) >= maxProblems || len(split) >= maxProblems {
				continue // lists cut at maxProblems need not be cut at the same place
			}
			if !slices.Equal(whole, split) {
				t.Fatalf("the %s schema and the Go checks disagree on %s\nschema: %+v\ngo:     %+v", dc.name, body, whole, split)
			}
		}
	})
}

// firstBytesOfSeed reads the first []byte value of a seed file in the go test fuzz v1 format.
func firstBytesOfSeed(f *testing.F, name string) []byte {
	f.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if quoted, ok := strings.CutPrefix(line, "[]byte("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
			if err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			return []byte(s)
		}
	}
	f.Fatalf("%s holds no []byte value", name)
	return nil
}
