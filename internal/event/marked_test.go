package event_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

func TestDecodeMarked_gives_the_event_DecodeCanonical_gives_for_what_the_intake_writes(t *testing.T) {
	p := newParser(t)
	for _, name := range []string{"opportunity-update.json", "account-associate-contacts.json", "custom-api-order-submitted.json", "plugin-event.json"} {
		ev, err := p.Parse(sample(t, name), event.Hints{ReceivedAt: time.Unix(1764054245, 0)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, err := event.AppendCanonical(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		want, err := p.DecodeCanonical(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := p.DecodeMarked(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DecodeMarked gave\n%+v\nDecodeCanonical gave\n%+v", name, got, want)
		}
	}
}

func TestMarked_holds_only_for_the_body_that_was_summed(t *testing.T) {
	body := []byte(`{"SchemaVersion":"1.1"}`)
	props := map[string]any{event.PropCanonical: event.CanonicalSum(body)}
	if !event.Marked(body, props) {
		t.Error("the summed body is not marked")
	}
	if event.Marked([]byte(`{"SchemaVersion":"1.0"}`), props) {
		t.Error("a changed body is still marked")
	}
	if event.Marked(body, map[string]any{}) {
		t.Error("a message without the property is marked")
	}
}

func TestDecodeMarked_still_refuses_what_is_not_an_event(t *testing.T) {
	p := newParser(t)
	for _, body := range []string{`[]`, `{"SchemaVersion":1}`, `{"A":1,"A":2}`, `{`} {
		if _, err := p.DecodeMarked([]byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		}
	}
}
