package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// R3 is a yardstick only if it does the intake's work: the same event, named the same way.
func TestLean_writes_the_event_dvrelay_writes_for_the_sample(t *testing.T) {
	body, err := os.ReadFile("../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want, err := p.Parse(body, event.Hints{ReceivedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := leanCanonical(body, now)
	if err != nil {
		t.Fatal(err)
	}
	var got event.Event
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, got, want string }{
		{"EventId", got.EventID, want.EventID}, {"EventName", got.EventName, want.EventName},
		{"RecordId", got.RecordID, want.RecordID}, {"Timestamp", got.Timestamp, want.Timestamp},
		{"TriggeredBy", got.TriggeredBy, want.TriggeredBy}, {"CorrelationId", got.CorrelationID, want.CorrelationID},
	} {
		if f.got != f.want {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if len(got.Attributes) != len(want.Attributes) {
		t.Errorf("%d attributes, want %d", len(got.Attributes), len(want.Attributes))
	}
	for k, v := range want.Attributes {
		if string(got.Attributes[k]) != string(v) {
			t.Errorf("attribute %s = %s, want %s", k, got.Attributes[k], v)
		}
	}
}

func TestLean_refuses_a_context_without_a_message_name(t *testing.T) {
	if _, err := leanCanonical([]byte(`{"PrimaryEntityName":"account"}`), time.Now()); err == nil {
		t.Fatal("accepted")
	}
}
