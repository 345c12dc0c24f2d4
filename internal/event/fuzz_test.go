package event_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// checkError fails unless err is one of the two documented error shapes.
func checkError(t *testing.T, err error) {
	t.Helper()
	var verr *event.ValidationError
	switch {
	case errors.Is(err, event.ErrMalformed):
	case errors.As(err, &verr):
		if len(verr.Problems) == 0 {
			t.Fatalf("ValidationError without problems: %v", err)
		}
	default:
		t.Fatalf("undocumented error %T: %v", err, err)
	}
}

// FuzzParse: Parse never panics, fails only with the documented errors, and whatever it accepts
// is a canonical event the worker will accept. Seeds: testdata/fuzz/FuzzParse (the fixtures,
// the samples and a few broken bodies).
func FuzzParse(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, sizeExceeded bool) {
		ev, err := p.Parse(body, event.Hints{SizeExceeded: sizeExceeded, ReceivedAt: time.Unix(1764054245, 0)})
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal the parsed event: %v", err)
		}
		if _, err := p.DecodeCanonical(out); err != nil {
			t.Fatalf("Parse accepted a body whose event DecodeCanonical rejects: %v\nevent: %s", err, out)
		}
	})
}

// FuzzDecodeCanonical: DecodeCanonical never panics, fails only with the documented errors, and
// an event it accepts survives json.Marshal and a second decode unchanged.
func FuzzDecodeCanonical(f *testing.F) {
	p, err := event.NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := p.DecodeCanonical(body)
		if err != nil {
			checkError(t, err)
			return
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := p.DecodeCanonical(out)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); string(out2) != string(out) {
			t.Fatalf("second decode changed the event:\n%s\n%s", out, out2)
		}
	})
}
