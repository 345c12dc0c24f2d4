package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeCanonicalAsBefore is DecodeCanonical as it was with encoding/json doing the decoding:
// the tree from encoding/json's Decoder, the same schema and checks, then json.Unmarshal into
// Event. DecodeCanonical must agree with it.
func decodeCanonicalAsBefore(p *Parser, body []byte) (Event, error) {
	if err := prescanned(body, func(scanResult) string { return KindCanonicalEvent }); err != nil {
		return Event{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return Event{}, err
	}
	var problems problemList
	validate(p.canonical, envelope(top, nil, stepMembers()...), &problems)
	(&checker{problems: &problems}).canonical(top)
	if _, hasRecord := top["RecordId"]; !hasRecord && top["SchemaVersion"] == "1.0" {
		problems.add(FieldProblem{Pointer: "/RecordId", Detail: "is required"})
	}
	for _, cv := range caseVariants(top, p.canonicalFields) {
		problems.add(cv)
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		if problems.empty() {
			problems.add(FieldProblem{Pointer: "", Detail: "cannot be read as an event: " + err.Error()})
		}
	} else if ev.Timestamp != "" {
		if _, err := parseTimestamp(ev.Timestamp); err != nil {
			problems.add(FieldProblem{Pointer: "/Timestamp", Detail: "must be an RFC 3339 date-time"})
		}
	}
	if !problems.empty() {
		return Event{}, newValidationError(KindCanonicalEvent, &problems)
	}
	return ev, nil
}

// repeatsTopLevelMember reads body's top-level member names with encoding/json's tokenizer.
func repeatsTopLevelMember(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	seen := map[string]bool{}
	depth := 0
	expectName := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			expectName = depth == 1
			continue
		case json.Delim('}'), json.Delim(']'):
			depth--
			expectName = depth == 1
			continue
		}
		if depth == 1 && expectName {
			name := tok.(string)
			if seen[name] {
				return true
			}
			seen[name] = true
			expectName = false
			continue
		}
		if depth == 1 {
			expectName = true
		}
	}
}

// agreeWithBefore fails t when DecodeCanonical and decodeCanonicalAsBefore disagree: what the
// new one accepts the old one accepted as the same Event, and what the old one accepted the new
// one accepts, but for a repeated top-level member, which it now refuses.
func agreeWithBefore(t *testing.T, p *Parser, body []byte) {
	t.Helper()
	got, err := p.DecodeCanonical(body)
	want, errBefore := decodeCanonicalAsBefore(p, body)
	switch {
	case err == nil && errBefore != nil:
		t.Fatalf("accepted what was refused (%v):\n%s", errBefore, body)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("decoded\n%#v\nwhere encoding/json gave\n%#v\nbody %s", got, want, body)
	case err != nil && errBefore == nil && !repeatsTopLevelMember(body):
		t.Fatalf("refused what was accepted: %v\n%s", err, body)
	}
}

func TestDecodeCanonical_reads_every_event_as_encoding_json_did(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, dir := range []string{"testdata/dataverse", "../../samples"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := p.Parse(raw, Hints{ReceivedAt: time.Unix(1700000000, 0), SizeExceeded: strings.Contains(f, "exceeded")})
			if err != nil {
				continue // the refused fixtures have their own tests
			}
			out, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, out)
		}
	}
	if len(bodies) < 10 {
		t.Fatalf("only %d events: the fixtures moved", len(bodies))
	}
	bodies = append(bodies, canonicalCases()...)
	for _, body := range bodies {
		agreeWithBefore(t, p, body)
	}
}

// canonicalCases are hand-made canonical events for the edges of the decoding rules.
func canonicalCases() [][]byte {
	const base = `"SchemaVersion":"1.1","EventId":"6f1f3c2e-4d0a-5b7e-9c61-2a8d7e0b5f43","CorrelationId":"c-1",` +
		`"EventName":"AccountUpdated","TriggeredBy":"u","Timestamp":"2026-01-31T09:30:00Z","Source":"dataverse-webhook"`
	var cases [][]byte
	for _, extra := range []string{
		``, `,"Attributes":null`, `,"Attributes":{}`, `,"Attributes":{"a":1,"b":{"x":[1,"}]"]},"c":"\"}","d":null,"e":-1.5e3}`,
		`,"Parameters":{"p":[true,false,null]},"OutputParameters":{"id":"x"}`, `,"Attributes":{"a":1,"a":2}`,
		`,"ChangedFields":null`, `,"ChangedFields":[]`, `,"ChangedFields":["a","b"]`, `,"Depth":1.0`, `,"Depth":1e0`,
		`,"Depth":2`, `,"Stage":40,"Mode":1,"IsInTransaction":false`, `,"Stage":10.0`, `,"Mode":null`,
		`,"RelatedRecords":[{"id":"6f1f3c2e-4d0a-5b7e-9c61-2a8d7e0b5f43","logicalName":"contact","ID":"x"}]`,
		`,"RelatedRecords":null`, `,"Trimmed":true`, `,"Attributes":"x"`, `,"Attributes":[]`, `,"Unknown":{"a":1}`,
		`,"EventId":"6f1f3c2e-4d0a-5b7e-9c61-2a8d7e0b5f43"`, `,"Attributes":{"a":1},"Attributes":{"b":2}`,
		`,"eventid":"x"`, `,"RecordId":null`,
	} {
		cases = append(cases, []byte("{"+base+extra+"}"))
	}
	return cases
}

func TestDecodeCanonical_refuses_a_repeated_member(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	body := canonicalCases()[0]
	body = append(body[:len(body)-1], []byte(`,"Attributes":{"a":1},"Attributes":{"b":2}}`)...)
	_, err = p.DecodeCanonical(body)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Pointer != "/Attributes" ||
		!strings.Contains(ve.Problems[0].Detail, "more than once") {
		t.Fatalf("got %v, want one problem at /Attributes saying it appears more than once", err)
	}
}

// FuzzDecodeCanonicalAgainstBefore holds DecodeCanonical to decodeCanonicalAsBefore on any body.
func FuzzDecodeCanonicalAgainstBefore(f *testing.F) {
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range canonicalCases() {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, body []byte) { agreeWithBefore(t, p, body) })
}
