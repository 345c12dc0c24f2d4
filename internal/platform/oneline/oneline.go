// Package oneline makes text from elsewhere (a downstream's answer, a dead letter's
// description) safe to show as one line, in a log-free support tool or a terminal: what could
// forge a line, move the cursor or hide text is escaped, so a reader sees what was sent.
package oneline

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape writes raw as one line: \n, \r and \t as such, other control characters, bidirectional
// controls and the Unicode line and paragraph separators as \uXXXX, and invalid UTF-8 as U+FFFD.
func Escape(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw))
	for len(raw) > 0 {
		r, size := utf8.DecodeRune(raw)
		raw = raw[size:]
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1:
			b.WriteRune(unicode.ReplacementChar)
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r), r == '\u2028', r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
