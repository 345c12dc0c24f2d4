package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sniffCanonicalBody = `{"SchemaVersion":"1.0","EventId":"5b1c7f0e-2d3a-4e5f-8a9b-0c1d2e3f4a5b","CorrelationId":"c","EventName":"OpportunityUpdated",` +
	`"Entity":"opportunity","Message":"Update","RecordId":"0f9e3f2a-6b1c-4d3e-9a8b-7c6d5e4f3a2b","ChangedFields":["name"],` +
	`"TriggeredBy":"11111111-2222-3333-4444-555555555555","Timestamp":"2026-11-25T05:59:58Z","Source":"dataverse-webhook"}`

// binaryContext is the start of a RemoteExecutionContext in .NET Binary XML.
const binaryContext = "\x40\x16RemoteExecutionContext\x08\x39http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk\x09\x01i"

func TestSniff_tells_the_canonical_event_from_Dataverses_own_formats(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("testdata", "dataverse", "docs-powerapps-update-contact-async.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		body          string
		fromDataverse bool
		want          Format
	}{
		{"the canonical event", sniffCanonicalBody, false, FormatCanonical},
		{"the canonical event, even with Dataverse's properties", sniffCanonicalBody, true, FormatCanonical},
		{"a context", string(fixture), false, FormatContextJSON},
		{"a context after a byte order mark and blanks", "\uFEFF \r\n" + string(fixture), false, FormatContextJSON},
		{"a trimmed context", `{"MessageName":"Update","PrimaryEntityName":"opportunity","InputParameters":null}`, false, FormatContextJSON},
		{"a context naming only its table", `{"PrimaryEntityName":"account"}`, false, FormatContextJSON},
		{"JSON with Dataverse's properties", `{"Depth":1}`, true, FormatContextJSON},
		{"an escaped member name counts", `{"Event\u0049d":"x","MessageName":"Update"}`, false, FormatCanonical},
		{"only top-level members count", `{"MessageName":"Update","InputParameters":[{"key":"Target","value":{"EventId":"x","SchemaVersion":"1.0"}}]}`, false, FormatContextJSON},
		{"a member name inside a string does not count", `{"Note":"\"EventId\":1","MessageName":"Update"}`, false, FormatContextJSON},
		{"the plugin event belongs to the intake", `{"EventName":"OpportunityUpdated","RecordId":"x","MessageName":"Update"}`, false, FormatCanonical},
		{"other JSON", `{"not":"an event"}`, false, FormatCanonical},
		{"an array", `[{"MessageName":"Update"}]`, true, FormatCanonical},
		{"empty", "", true, FormatCanonical},
		{"XML", `<RemoteExecutionContext xmlns="http://schemas.datacontract.org/2004/07/Microsoft.Xrm.Sdk"/>`, false, FormatXML},
		{"XML with a declaration and a byte order mark", "\uFEFF<?xml version=\"1.0\"?><RemoteExecutionContext/>", false, FormatXML},
		{".NET Binary", binaryContext, false, FormatDotNetBinary},
		{".NET Binary as a host's UTF-8 string", "@\x16RemoteExecutionContext\uFFFD", false, FormatDotNetBinary},
		{"binary not starting as binary XML", "\x01\x02\x03", false, FormatCanonical},
		{"binary from Dataverse", "\x01\x02\x03", true, FormatDotNetBinary},
		{"text starting with @", "@here is some text", false, FormatCanonical},
		{"plain text", "hello", true, FormatCanonical},
		{"text whose 64th byte starts a character", "@" + strings.Repeat("x", 62) + "é and more", false, FormatCanonical},
		{"text cut inside a character", "@ab\xc3", false, FormatDotNetBinary},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sniff([]byte(c.body), c.fromDataverse); got != c.want {
				t.Errorf("Sniff = %d, want %d", got, c.want)
			}
		})
	}
}

// FuzzSniff: the discriminator never panics; on any JSON object it sees exactly the
// top-level member names encoding/json sees; and whatever the worker's canonical decoder accepts
// is routed to it.
func FuzzSniff(f *testing.F) {
	p, err := NewParser()
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
		sniffCanonicalBody, binaryContext, `<RemoteExecutionContext/>`, "\uFEFF{\"MessageName\":\"Update\"}",
		`{"Event\u0049d":1}`, `{"a":{"EventId":[1,{"b":"}"}]},"MessageName":"x"}`, `{"a":"\\","EventId":2}`,
		`{"a":1,}`, `{"a" 1}`, `{"a":`, `{"a":"`, `{"EventId`, `{"a":tru`, `{"a":[}`, `{}`, `null`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, fromDataverse bool) {
		format := Sniff(body, fromDataverse)

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
			if format == FormatXML || format == FormatDotNetBinary {
				t.Fatalf("a JSON object sniffed as %d", format)
			}
		}
		if _, err := p.DecodeCanonical(body); err == nil && format != FormatCanonical {
			t.Fatalf("a canonical event sniffed as %d", format)
		}
		if t0 := trimTextStart(body); len(t0) > 0 && t0[0] == '<' && format != FormatXML {
			t.Fatalf("a body starting with < sniffed as %d", format)
		}
		if strings.HasPrefix(string(body), "{") && format == FormatDotNetBinary {
			t.Fatal("JSON text sniffed as .NET Binary")
		}
	})
}
