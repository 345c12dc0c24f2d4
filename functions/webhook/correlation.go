package webhook

import "github.com/google/uuid"

// maxCorrelationIDLen bounds an id taken from the outside: it goes into logs, headers and
// message properties, so a long or odd one is replaced rather than trusted.
const maxCorrelationIDLen = 64

// validCorrelationID returns v if it looks like an id (a GUID or a similar token: letters,
// digits, '-', '_', '.', at most 64 characters), and "" otherwise.
func validCorrelationID(v string) string {
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

func newCorrelationID() string { return uuid.NewString() }
