package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Two deliveries reach the worker. The intake queues the canonical event; a Dataverse service
// endpoint with contract Queue or Topic posts its RemoteExecutionContext straight to Service Bus,
// skipping the intake. decode tells them apart from the body (and Dataverse's application
// properties) and turns either into the canonical event, so the routes never know which came.

// NativeParser normalizes a RemoteExecutionContext exactly as the intake does: same checks, same
// EventId. *event.Parser implements it.
type NativeParser interface {
	Parse(body []byte, h event.Hints) (event.Event, error)
}

var _ NativeParser = (*event.Parser)(nil)

// Application properties Dataverse puts on the messages it posts to Service Bus: claims keyed by
// URI, and a flag when it trimmed the context to fit.
const (
	dataverseClaimPrefix = "http://schemas.microsoft.com/xrm/2011/Claims/"
	// propMessageMaxSizeExceeded marks a context Dataverse cut down to fit 192 KB: InputParameters,
	// images and ParentContext are gone.
	propMessageMaxSizeExceeded = "MessageMaxSizeExceeded"
)

// dataverseClaims are the claim properties that, any one of them present, say Dataverse posted
// the message.
var dataverseClaims = [...]string{
	dataverseClaimPrefix + "Organization",
	dataverseClaimPrefix + "User",
	dataverseClaimPrefix + "InitiatingUser",
	dataverseClaimPrefix + "EntityLogicalName",
	dataverseClaimPrefix + "RequestName",
}

// UnsupportedFormatError reports a body in a message format of a Dataverse service endpoint that
// the worker does not read. No retry can change the body, so it is dead-lettered at once as
// UnsupportedMessageFormat; only a change of the service endpoint helps the events after it.
type UnsupportedFormatError struct {
	Format        string // ".NET Binary" or "XML"
	MessageFormat int    // the service endpoint's messageformat that writes it: 1 or 3
}

func (e *UnsupportedFormatError) Error() string {
	return fmt.Sprintf("the body is a Dataverse context in %s (service endpoint messageformat %d), which dvrelay does not read: "+
		"set the service endpoint's message format to JSON (messageformat 2); this message fails the same way if resubmitted",
		e.Format, e.MessageFormat)
}

// bodyFormat is what a message body turned out to be.
type bodyFormat int

const (
	// formatCanonical: anything not recognised as one of the others; the canonical decoder judges
	// it (and dead-letters it as InvalidMessage when it is not a canonical event).
	formatCanonical   bodyFormat = iota
	formatContextJSON            // a RemoteExecutionContext in JSON: service endpoint messageformat 2
	formatDotNetBinary
	formatXML
)

// Member names that tell the two JSON shapes apart. The canonical event always has SchemaVersion
// and EventId; a RemoteExecutionContext has neither and always has MessageName and
// PrimaryEntityName (InputParameters only when not trimmed). EventName and RecordId together are
// the compact plugin event, which belongs to the intake.
var shapeMembers = []string{"SchemaVersion", "EventId", "MessageName", "PrimaryEntityName", "InputParameters", "EventName", "RecordId"}

// The bits topLevelMembers sets for shapeMembers, in its order.
const (
	memberSchemaVersion = 1 << iota
	memberEventID
	memberMessageName
	memberPrimaryEntityName
	memberInputParameters
	memberEventName
	memberRecordID
)

// sniffFormat decides what body is, cheaply: the first bytes for the formats that are not JSON,
// and one pass over the top-level member names (no value decoded) for JSON. fromDataverse says
// the message carries Dataverse's claim properties.
func sniffFormat(body []byte, fromDataverse bool) bodyFormat {
	t := trimTextStart(body)
	if len(t) == 0 {
		return formatCanonical
	}
	switch {
	case t[0] == '{':
		// The intake writes SchemaVersion first: its events are told apart after a few bytes.
		m := topLevelMembers(t, shapeMembers, memberSchemaVersion|memberEventID)
		switch {
		case m&(memberSchemaVersion|memberEventID) != 0:
			return formatCanonical
		case m&memberEventName != 0 && m&memberRecordID != 0:
			return formatCanonical
		case fromDataverse || m&(memberMessageName|memberPrimaryEntityName|memberInputParameters) != 0:
			return formatContextJSON
		}
		return formatCanonical
	case t[0] == '<':
		// DataContract XML: <RemoteExecutionContext xmlns=...>, perhaps after an XML declaration.
		return formatXML
	case looksBinary(t) && (fromDataverse || isBinaryXMLElement(t[0])):
		return formatDotNetBinary
	}
	return formatCanonical
}

// trimTextStart drops a UTF-8 byte order mark and JSON whitespace from the front of b.
func trimTextStart(b []byte) []byte {
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// isBinaryXMLElement reports whether c is an element record of .NET Binary XML ([MC-NBFX]
// 0x40-0x77), the first record the DataContract serializer writes: 0x40, '@', is the short
// element <RemoteExecutionContext> starts with.
func isBinaryXMLElement(c byte) bool { return c >= 0x40 && c <= 0x77 }

// looksBinary reports whether the first bytes of b hold what no JSON or XML text does: a control
// character other than tab, CR and LF, invalid UTF-8, or U+FFFD, which a host that read binary
// bytes as a UTF-8 string leaves in their place.
func looksBinary(b []byte) bool {
	window := min(len(b), 64)
	head := b[:window]
	for len(head) > 0 {
		if !utf8.FullRune(head) {
			// A character cut by the window says nothing; one cut by the end of the body is invalid.
			return window == len(b)
		}
		r, size := utf8.DecodeRune(head)
		switch {
		case r == utf8.RuneError, r == 0x7f:
			return true
		case r < 0x20 && r != '\t' && r != '\r' && r != '\n':
			return true
		}
		head = head[size:]
	}
	return false
}

// topLevelMembers reports which of names are member names of the JSON object at the start of b,
// as a bit set (bit i for names[i]). It reads each member name and skips its value without
// decoding it, and stops where b stops looking like an object, reporting what it saw until then:
// it only routes the body to a decoder, which judges all of it. A name holding an escape is
// unquoted as encoding/json would; no other name is copied. It returns as soon as it has found a
// name in stop.
func topLevelMembers(b []byte, names []string, stop uint) uint {
	var found uint
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return found
		}
		end, escaped := scanString(b, i)
		if end < 0 {
			return found
		}
		if found |= matchName(b[i:end], escaped, names); found&stop != 0 {
			return found
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return found
		}
		if i = skipValue(b, skipSpace(b, i+1)); i < 0 {
			return found
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return found
		}
		i++
	}
}

// matchName returns the bit of the name in names that quoted (a JSON string, quotes included) spells.
func matchName(quoted []byte, escaped bool, names []string) uint {
	raw := quoted[1 : len(quoted)-1]
	if escaped {
		var name string
		if err := json.Unmarshal(quoted, &name); err != nil {
			return 0
		}
		raw = []byte(name)
	}
	for j, n := range names {
		if string(raw) == n { // compared in place, not copied
			return 1 << j
		}
	}
	return 0
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a quote) and whether it holds
// an escape; -1 when the string does not end.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the index after the value starting at b[i], or -1 when it does not end.
// Nesting is counted, not checked: the decoder that follows checks it.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// fromDataverse reports whether the message carries one of Dataverse's claim properties.
func fromDataverse(props map[string]any) bool {
	for _, k := range dataverseClaims {
		if _, ok := props[k]; ok {
			return true
		}
	}
	return false
}

// sizeExceeded reports Dataverse's MessageMaxSizeExceeded property. Its value is not documented;
// only an explicit false (or "false") reads as absent.
func sizeExceeded(props map[string]any) bool {
	v, ok := props[propMessageMaxSizeExceeded]
	if !ok {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return !strings.EqualFold(strings.TrimSpace(x), "false")
	}
	return true
}

// decoded is a delivery's body as the routes see it.
type decoded struct {
	event event.Event
	doc   *eventDoc // the event as JSON, for $event paths
	// native: the body was a RemoteExecutionContext Dataverse posted, not the intake's event.
	native bool
}

// decode turns the body of d into the canonical event. Errors are the decoder's
// (*event.ValidationError, event.ErrMalformed) or *UnsupportedFormatError; each means the message
// can never be processed.
func (w *Worker) decode(d queue.Delivery) (decoded, error) {
	switch sniffFormat(d.Body, fromDataverse(d.ApplicationProperties)) {
	case formatDotNetBinary:
		return decoded{}, &UnsupportedFormatError{Format: ".NET Binary", MessageFormat: 1}
	case formatXML:
		return decoded{}, &UnsupportedFormatError{Format: "XML", MessageFormat: 3}
	case formatContextJSON:
		if w.native != nil {
			return w.decodeContext(d)
		}
	}
	ev, err := w.decoder.DecodeCanonical(d.Body)
	if err != nil {
		return decoded{}, err
	}
	return decoded{event: ev, doc: &eventDoc{body: d.Body}}, nil
}

// decodeContext normalizes a RemoteExecutionContext that Dataverse posted to the queue with the
// intake's parser, so it gets the EventId the intake would give it: the same operation reaching
// the worker both ways is recognisably one event. What the intake takes from the HTTP request
// comes from the message instead: the correlation id (the message's, else the context's), the
// trim flag (MessageMaxSizeExceeded), and the time it arrived (EnqueuedTime), which stamps a
// context without a usable OperationCreatedOn.
func (w *Worker) decodeContext(d queue.Delivery) (decoded, error) {
	received := d.EnqueuedTime
	if received.IsZero() {
		received = w.now()
	}
	ev, err := w.native.Parse(d.Body, event.Hints{SizeExceeded: sizeExceeded(d.ApplicationProperties), ReceivedAt: received})
	if err != nil {
		return decoded{}, err
	}
	ev.Source = event.SourceServiceBus
	// The EventId is the last resort: unlike a fresh UUID it is the same on every redelivery.
	ev.CorrelationID = firstUsable(d.CorrelationID, ev.CorrelationID, ev.EventID)
	body, err := json.Marshal(ev)
	if err != nil {
		return decoded{}, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	return decoded{event: ev, doc: &eventDoc{body: body}, native: true}, nil
}

// firstUsable returns the first id that may travel in headers and logs, by the intake's rule for
// correlation ids (event.ValidCorrelationID).
func firstUsable(ids ...string) string {
	for _, id := range ids {
		if v := event.ValidCorrelationID(id); v != "" {
			return v
		}
	}
	return ""
}

// deadLetterReason is the reason a body that cannot be decoded is parked with.
func deadLetterReason(err error) string {
	var unsupported *UnsupportedFormatError
	if errors.As(err, &unsupported) {
		return queue.ReasonUnsupportedMessageFormat
	}
	return queue.ReasonInvalidMessage
}
