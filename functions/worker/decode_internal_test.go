package worker

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

const canonicalBody = `{"SchemaVersion":"1.0","EventId":"5b1c7f0e-2d3a-4e5f-8a9b-0c1d2e3f4a5b","CorrelationId":"c","EventName":"OpportunityUpdated",` +
	`"Entity":"opportunity","Message":"Update","RecordId":"0f9e3f2a-6b1c-4d3e-9a8b-7c6d5e4f3a2b","ChangedFields":["name"],` +
	`"TriggeredBy":"11111111-2222-3333-4444-555555555555","Timestamp":"2026-11-25T05:59:58Z","Source":"dataverse-webhook"}`

// binaryContext is the start of a RemoteExecutionContext in .NET Binary XML.
const binaryContext = "\x40\x16RemoteExecutionContext\x08\x39http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk\x09\x01i"

func TestSniffFormat_tells_the_canonical_event_from_Dataverses_own_formats(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("testdata", "dataverse", "docs-powerapps-update-contact-async.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		body          string
		fromDataverse bool
		want          bodyFormat
	}{
		{"the canonical event", canonicalBody, false, formatCanonical},
		{"the canonical event, even with Dataverse's properties", canonicalBody, true, formatCanonical},
		{"a context", string(fixture), false, formatContextJSON},
		{"a context after a byte order mark and blanks", "\uFEFF \r\n" + string(fixture), false, formatContextJSON},
		{"a trimmed context", `{"MessageName":"Update","PrimaryEntityName":"opportunity","InputParameters":null}`, false, formatContextJSON},
		{"a context naming only its table", `{"PrimaryEntityName":"account"}`, false, formatContextJSON},
		{"JSON with Dataverse's properties", `{"Depth":1}`, true, formatContextJSON},
		{"an escaped member name counts", `{"Event\u0049d":"x","MessageName":"Update"}`, false, formatCanonical},
		{"only top-level members count", `{"MessageName":"Update","InputParameters":[{"key":"Target","value":{"EventId":"x","SchemaVersion":"1.0"}}]}`, false, formatContextJSON},
		{"a member name inside a string does not count", `{"Note":"\"EventId\":1","MessageName":"Update"}`, false, formatContextJSON},
		{"the plugin event belongs to the intake", `{"EventName":"OpportunityUpdated","RecordId":"x","MessageName":"Update"}`, false, formatCanonical},
		{"other JSON", `{"not":"an event"}`, false, formatCanonical},
		{"an array", `[{"MessageName":"Update"}]`, true, formatCanonical},
		{"empty", "", true, formatCanonical},
		{"XML", `<RemoteExecutionContext xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk"/>`, false, formatXML},
		{"XML with a declaration and a byte order mark", "\uFEFF<?xml version=\"1.0\"?><RemoteExecutionContext/>", false, formatXML},
		{".NET Binary", binaryContext, false, formatDotNetBinary},
		{".NET Binary as a host's UTF-8 string", "@\x16RemoteExecutionContext\uFFFD", false, formatDotNetBinary},
		{"binary not starting as binary XML", "\x01\x02\x03", false, formatCanonical},
		{"binary from Dataverse", "\x01\x02\x03", true, formatDotNetBinary},
		{"text starting with @", "@here is some text", false, formatCanonical},
		{"plain text", "hello", true, formatCanonical},
		{"text whose 64th byte starts a character", "@" + strings.Repeat("x", 62) + "é and more", false, formatCanonical},
		{"text cut inside a character", "@ab\xc3", false, formatDotNetBinary},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := sniffFormat([]byte(c.body), c.fromDataverse); got != c.want {
				t.Errorf("sniffFormat = %d, want %d", got, c.want)
			}
		})
	}
}

func TestSizeExceeded_reads_Dataverses_flag_unless_it_says_false(t *testing.T) {
	for _, c := range []struct {
		props map[string]any
		want  bool
	}{
		{nil, false},
		{map[string]any{"MessageMaxSizeExceeded": true}, true},
		{map[string]any{"MessageMaxSizeExceeded": "True"}, true},
		{map[string]any{"MessageMaxSizeExceeded": ""}, true},
		{map[string]any{"MessageMaxSizeExceeded": int64(1)}, true},
		{map[string]any{"MessageMaxSizeExceeded": false}, false},
		{map[string]any{"MessageMaxSizeExceeded": " false "}, false},
	} {
		if got := sizeExceeded(c.props); got != c.want {
			t.Errorf("sizeExceeded(%v) = %v", c.props, got)
		}
	}
}

// FuzzSniffFormat: the discriminator never panics; on any JSON object it sees exactly the
// top-level member names encoding/json sees; and whatever the worker's canonical decoder accepts
// is routed to it.
func FuzzSniffFormat(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "dataverse", "*.json"))
	for _, name := range fixtures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	for _, s := range []string{
		canonicalBody, binaryContext, `<RemoteExecutionContext/>`, "\uFEFF{\"MessageName\":\"Update\"}",
		`{"Event\u0049d":1}`, `{"a":{"EventId":[1,{"b":"}"}]},"MessageName":"x"}`, `{"a":"\\","EventId":2}`,
		`{"a":1,}`, `{"a" 1}`, `{"a":`, `{"a":"`, `{"EventId`, `{"a":tru`, `{"a":[}`, `{}`, `null`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, fromDataverse bool) {
		format := sniffFormat(body, fromDataverse)

		var members map[string]json.RawMessage
		if t0 := bytes.TrimLeft(body, " \t\r\n"); len(t0) > 0 && t0[0] == '{' && json.Unmarshal(body, &members) == nil {
			var want uint
			for i, n := range shapeMembers {
				if _, ok := members[n]; ok {
					want |= 1 << i
				}
			}
			if got := topLevelMembers(body, shapeMembers, 0); got != want {
				t.Fatalf("topLevelMembers = %b, encoding/json sees %b", got, want)
			}
			if format == formatXML || format == formatDotNetBinary {
				t.Fatalf("a JSON object sniffed as %d", format)
			}
		}
		if _, err := p.DecodeCanonical(body); err == nil && format != formatCanonical {
			t.Fatalf("a canonical event sniffed as %d", format)
		}
		if t0 := trimTextStart(body); len(t0) > 0 && t0[0] == '<' && format != formatXML {
			t.Fatalf("a body starting with < sniffed as %d", format)
		}
		if strings.HasPrefix(string(body), "{") && format == formatDotNetBinary {
			t.Fatal("JSON text sniffed as .NET Binary")
		}
	})
}
