package event

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/xeipuuv/gojsonschema"
)

//go:embed schema/*.schema.json
var schemaFiles embed.FS

// EventIDNamespace is the namespace of the name-based (SHA-1, version 5) UUIDs dvrelay uses as
// EventId. It is fixed forever: changing it would give every replayed event a new id and defeat
// duplicate detection.
const EventIDNamespace = "6f1f3c2e-4d0a-5b7e-9c61-2a8d7e0b5f43"

// Kinds of payload, as reported in ValidationError.Kind.
const (
	KindRemoteExecutionContext = "RemoteExecutionContext"
	KindPluginEvent            = "PluginEvent"
	KindCanonicalEvent         = "CanonicalEvent"
)

// Parser decodes and validates the payloads dvrelay accepts. Build one with NewParser at start
// and share it: it holds only compiled schemas and is safe for concurrent use.
//
// Formats (GUIDs, logical names, message names, /Date(...)/ and RFC 3339 shapes) are JSON
// Schema patterns rather than custom gojsonschema FormatCheckers. FormatCheckers live in a
// package-level registry in gojsonschema, so registering ours would be a hidden global side
// effect of NewParser; patterns keep the schema files self-contained (any JSON Schema tool can
// use them). What a pattern cannot say—a date's calendar range, an option value being an
// integer—is checked in Go after the schema, and reported in the same ValidationError.
type Parser struct {
	remote    *gojsonschema.Schema
	plugin    *gojsonschema.Schema
	canonical *gojsonschema.Schema
	// canonicalFields are Event's member names, for the case-variant check.
	canonicalFields []string
}

// NewParser compiles the embedded schemas once.
func NewParser() (*Parser, error) {
	p := &Parser{
		canonicalFields: jsonFieldNames(reflect.TypeFor[Event]()),
	}
	for _, s := range []struct {
		file string
		dst  **gojsonschema.Schema
	}{
		{"schema/remote-execution-context.schema.json", &p.remote},
		{"schema/plugin-event.schema.json", &p.plugin},
		{"schema/canonical-event.schema.json", &p.canonical},
	} {
		raw, err := schemaFiles.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("read embedded schema %s: %w", s.file, err)
		}
		compiled, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(raw))
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", s.file, err)
		}
		*s.dst = compiled
	}
	return p, nil
}

// Parse is the intake's decoder. It accepts the native RemoteExecutionContext a webhook step
// posts and the compact plugin event (any object with both EventName and RecordId keys), checks
// it against its schema, and normalizes it into the canonical Event.
//
// Errors: a body that is not a JSON object wraps ErrMalformed; a body that is an object but
// breaks its schema or a format is a *ValidationError listing every failing field, each with a
// JSON pointer into the posted body. Before anything is decoded, one pass over the bytes refuses,
// as a *ValidationError naming each place, a body that nests objects and arrays deeper than 64
// levels, writes a number longer than 64 characters or with an exponent beyond ±308, or holds
// more than 10,000 elements in an array, 20,000 members in an object or 100,000 values in all;
// so whatever a body holds, its cost is linear in its size.
//
// Naming: EventName is EventNameFor(PrimaryEntityName, MessageName), e.g. OpportunityUpdated.
//
// EventId is a name-based UUID, uuid.NewSHA1(EventIDNamespace, parts joined by "\n"), GUIDs
// lower-cased:
//   - webhook: "webhook", OrganizationId, OperationId (else RequestId, else CorrelationId, else
//     "body " and the SHA-256 of the body in hex; an all-zero GUID counts as absent),
//     OwningExtension.Id (the step), MessageName, PrimaryEntityId (absent members are empty
//     parts). Dataverse re-posting the
//     same operation to the same step (its one retry, a resumed system job) gives the same id,
//     so duplicate detection drops the copy; another operation or another step registered on
//     the same operation gives another id.
//   - plugin event: "plugin", EventName, RecordId, Timestamp (RFC 3339 UTC), TriggeredBy, and
//     the sorted ChangedFields joined by ",". The same event posted twice gets one id however
//     its timestamp's offset was written.
//
// Timestamp is OperationCreatedOn in RFC 3339 UTC, else h.ReceivedAt (else the clock).
//
// What a context may lack is listed at parseRemote. Typed wrappers a .NET serializer writes for
// a primitive ({"__type":"Guid:#System","__value":…}, DateTime:#System and the other System
// primitives) are read as the value they wrap, anywhere in the body.
//
// A Create or Update context in the shape Dataverse writes is read by a fast path in one pass
// over the bytes (fast.go); anything it does not vouch for, every refusal included, is read by
// the full parser, so what is accepted, what is refused and what the event holds are the same.
func (p *Parser) Parse(body []byte, h Hints) (Event, error) {
	return p.ParseBuffered(body, h, nil)
}

// ParseBuffered is Parse, reusing *buf (when buf is not nil) for the values of the event's
// Attributes, Parameters and OutputParameters, which are then slices of it: the caller lends the
// buffer for as long as it uses the event, and gets it back grown to what the event needed.
func (p *Parser) ParseBuffered(body []byte, h Hints, buf *[]byte) (Event, error) {
	if ev, ok := p.fastParse(body, h, buf); ok {
		return ev, nil
	}
	return p.parseFull(body, h)
}

// parseFull is the full parser: the pre-scan, the tree, the schema, the checks and the
// normalizer, naming every failing field.
func (p *Parser) parseFull(body []byte, h Hints) (Event, error) {
	top, err := decode(body, func(scan scanResult) string {
		if scan.plugin {
			return KindPluginEvent
		}
		return KindRemoteExecutionContext
	})
	if err != nil {
		return Event{}, err
	}
	unwrapSystemValues(body, top)
	_, hasName := top["EventName"]
	_, hasID := top["RecordId"]
	if hasName && hasID {
		return p.parsePlugin(top)
	}
	return p.parseRemote(body, top, h)
}

// DecodeCanonical is the worker's decoder: the queue message body is checked against the
// canonical event schema before anything runs, so a poison message is recognised as such. A
// member that appears twice, or in two spellings that differ only in case, is refused: which one
// counts would otherwise be up to the decoder. Attributes, Parameters and OutputParameters keep
// their values as the raw JSON of the body.
func (p *Parser) DecodeCanonical(body []byte) (Event, error) {
	if err := prescanned(body, func(scanResult) string { return KindCanonicalEvent }); err != nil {
		return Event{}, err
	}
	cb := decodeCanonicalBody(body)
	top := cb.top
	var problems problemList
	validate(p.canonical, envelope(top, nil, stepMembers()...), &problems)
	(&checker{problems: &problems}).canonical(top)
	if _, hasRecord := top["RecordId"]; !hasRecord && top["SchemaVersion"] == "1.0" {
		// Only 1.1 lets an event name no record.
		problems.add(FieldProblem{Pointer: "/RecordId", Detail: "is required"})
	}
	for _, cv := range caseVariants(top, p.canonicalFields) {
		problems.add(cv)
	}
	for _, name := range cb.repeated {
		problems.add(FieldProblem{Pointer: "/" + escapePointerToken(name), Detail: "appears more than once; send one " + name})
	}
	ev, err := cb.event()
	if err != nil {
		// The schema admits only what Event can hold, so this adds nothing when the schema has
		// spoken; alone, it keeps a schema gap from letting a half-decoded event through.
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

// decode pre-scans body (see scanner) and decodes it, once, only when it is a single JSON object
// within the limits, with numbers kept as json.Number. A body that is not a JSON object wraps
// ErrMalformed; a limit broken is a *ValidationError of the kind kind names.
func decode(body []byte, kind func(scanResult) string) (map[string]any, error) {
	if err := prescanned(body, kind); err != nil {
		return nil, err
	}
	return buildTree(body), nil
}

// prescanned pre-scans body and says why it cannot be decoded, if it cannot (see decode).
func prescanned(body []byte, kind func(scanResult) string) error {
	scan := prescan(body)
	switch {
	case !scan.wellFormed:
		return syntaxError(body)
	case !scan.object:
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		return fmt.Errorf("%w: found %s at offset %d", ErrMalformed, jsonKind(trimmed), len(body)-len(trimmed))
	case !scan.problems.empty():
		return newValidationError(kind(scan), &scan.problems)
	}
	return nil
}

// syntaxError words what is wrong with a body that is not one well-formed JSON value, as
// encoding/json's decoder sees it. It reads the value as raw bytes, so nothing is built.
func syntaxError(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return malformed(err, len(body))
	}
	_, err := dec.Token()
	switch {
	case err == nil:
		err = errors.New("data after the top-level value")
	case errors.Is(err, io.EOF):
		// encoding/json finds nothing wrong where the scan did: refuse rather than decode a body
		// the limits did not vouch for.
		err = errors.New("not accepted by the pre-scan")
	}
	return fmt.Errorf("%w: invalid JSON at offset %d: %v", ErrMalformed, dec.InputOffset(), err)
}

func malformed(err error, end int) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("%w: invalid JSON at offset %d: %v", ErrMalformed, syntax.Offset, syntax)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: invalid JSON at offset %d: unexpected end of input", ErrMalformed, end)
	default:
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
}

// jsonFieldNames lists the member names of a struct type as its json tags spell them.
func jsonFieldNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue // never encoded or decoded
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// caseVariants reports members that differ from a known field only in case. encoding/json
// would fold them onto the field (the last one wins), so "recordid" could silently replace a
// RecordId the schema had checked.
func caseVariants(top map[string]any, known []string) []FieldProblem {
	var problems []FieldProblem
	for key := range top {
		for _, name := range known {
			if key != name && strings.EqualFold(key, name) {
				problems = append(problems, FieldProblem{
					Pointer: "/" + escapePointerToken(key),
					Detail:  fmt.Sprintf("differs from %s only in case; send one %s", name, name),
				})
			}
		}
	}
	return problems
}

func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
