package event_test

import (
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

// A body failing in every item once cost a schema error per item (10-20 µs and dozens of
// allocations each, seconds for a 200 KB body) and an answer as long as the body.
func TestParse_answers_a_flood_of_bad_items_with_bounded_work_and_a_bounded_list(t *testing.T) {
	p := newParser(t)
	const items = 10000
	for name, body := range map[string][]byte{
		"Target attributes that are numbers":        updateWith(repeat("1", items)...),
		"Target attributes without key or value":    updateWith(repeat("{}", items)...),
		"attribute keys that are not logical names": updateWith(repeat(`{"key":"Name","value":1}`, items)...),
		"lookups without ids":                       updateWith(repeat(`{"key":"a","value":{"__type":"EntityReference:x","LogicalName":"account"}}`, items)...),
		"changed fields that are numbers":           pluginWith(repeat("1", items)...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
			verr := validationError(t, err)
			if len(verr.Problems) != 101 {
				t.Fatalf("%d problems, want the first 100 and a last one saying checking stopped", len(verr.Problems))
			}
			if last := verr.Problems[100]; last.Pointer != "" || last.Detail != "checking stopped after the first 100 problems" {
				t.Errorf("last problem = %+v", last)
			}
			// Decoding the body once costs a few allocations per item; a second decode, or a
			// schema error per item (dozens of allocations each), would show.
			if n, decoding := allocs(p, body), decodeAllocs(t, body); n > 1.25*decoding+2000 {
				t.Errorf("%v allocations for %d bad items; decoding the body alone makes %v", n, items, decoding)
			}
		})
	}
}
