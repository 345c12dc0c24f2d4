package event

// maxCorrelationIDLen bounds an id taken from the outside: it goes into logs, headers and
// message properties, so a long or odd one is replaced rather than trusted.
const maxCorrelationIDLen = 64

// ValidCorrelationID returns v if it looks like an id (a GUID or a similar token: letters,
// digits, '-', '_', '.', at most 64 characters), and "" otherwise. The intake (headers and
// payloads) and the worker (Dataverse's own queue messages) both take correlation ids by it.
func ValidCorrelationID(v string) string {
	if v == "" || len(v) > maxCorrelationIDLen {
		return ""
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_', c == '.':
		default:
			return ""
		}
	}
	return v
}
