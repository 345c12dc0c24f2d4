package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Format is what a message body turned out to be.
type Format int

const (
	// FormatCanonical: anything not recognised as one of the others; the canonical decoder judges
	// it (and dead-letters it as InvalidMessage when it is not a canonical event).
	FormatCanonical    Format = iota
	FormatContextJSON         // a RemoteExecutionContext in JSON: service endpoint messageformat 2
	FormatDotNetBinary        // a context in .NET Binary XML: messageformat 1, which dvrelay does not read
	FormatXML                 // a context in DataContract XML: messageformat 3, which dvrelay does not read
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

// Sniff decides what a queue message body is, cheaply: the first bytes for the formats that are
// not JSON, and one pass over the top-level member names (no value decoded) for JSON.
// fromDataverse says the message carries Dataverse's claim properties. Two deliveries reach the
// worker: the intake's canonical event, and the context a Dataverse service endpoint posts
// straight to the queue, in the format the endpoint is set to (JSON, XML or .NET Binary).
func Sniff(body []byte, fromDataverse bool) Format {
	t := trimTextStart(body)
	if len(t) == 0 {
		return FormatCanonical
	}
	switch {
	case t[0] == '{':
		// The intake writes SchemaVersion first: its events are told apart after a few bytes.
		m := topLevelMembers(t, shapeMembers, memberSchemaVersion|memberEventID)
		switch {
		case m&(memberSchemaVersion|memberEventID) != 0:
			return FormatCanonical
		case m&memberEventName != 0 && m&memberRecordID != 0:
			return FormatCanonical
		case fromDataverse || m&(memberMessageName|memberPrimaryEntityName|memberInputParameters) != 0:
			return FormatContextJSON
		}
		return FormatCanonical
	case t[0] == '<':
		// DataContract XML: <RemoteExecutionContext xmlns=...>, perhaps after an XML declaration.
		return FormatXML
	case looksBinary(t) && (fromDataverse || isBinaryXMLElement(t[0])):
		return FormatDotNetBinary
	}
	return FormatCanonical
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
