package worker

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/platform/oneline"
)

// maxAnswerExcerpt bounds how much of a downstream's answer a dead letter keeps: enough for
// the reason an API gives ({"message":"customer account 4711 is blocked in ERP"}), not a page.
const maxAnswerExcerpt = 512

// answerError carries what a downstream said when it refused a call. Support needs that text
// to act on a dead letter, so it goes into the outcome's description; it may quote the
// record's data, so Error() leaves it out and it never reaches a log line.
type answerError struct {
	err    error
	answer string
}

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// WithAnswer attaches the first 512 bytes of a downstream's answer to err, as one line of text,
// for the dead-letter description only. Custom steps use it for the answers of their own calls.
func WithAnswer(err error, answer []byte) error {
	if err == nil {
		return nil
	}
	excerpt := answerExcerpt(answer)
	if excerpt == "" {
		return err
	}
	return &answerError{err: err, answer: excerpt}
}

// describe is err's text for an outcome's description: with the downstream's answer, when a
// step kept one. Log lines and summaries use err.Error().
func describe(err error) string {
	var a *answerError
	if errors.As(err, &a) {
		return err.Error() + ": " + a.answer
	}
	return err.Error()
}

// answerExcerpt makes the start of an answer safe to show as one line: control characters
// (newlines, terminal escapes, bidirectional overrides) are escaped so the text cannot forge
// lines or hide itself in a terminal or a support tool, and invalid UTF-8 is replaced. A cut
// answer ends with "…"; a character straddling the cut is dropped whole.
func answerExcerpt(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	cut := len(raw) > maxAnswerExcerpt
	if cut {
		raw = raw[:maxAnswerExcerpt]
		for i := 1; i < utf8.UTFMax && i <= len(raw); i++ {
			if utf8.RuneStart(raw[len(raw)-i]) {
				if !utf8.FullRune(raw[len(raw)-i:]) {
					raw = raw[:len(raw)-i]
				}
				break
			}
		}
	}
	text := oneline.Escape(raw)
	if cut {
		text += "…"
	}
	return text
}
