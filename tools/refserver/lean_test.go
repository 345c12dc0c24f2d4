package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// R3 is a yardstick only if it does the intake's work: it appends the bytes the intake queues.
func TestLean_appends_the_event_dvrelay_queues_for_the_sample(t *testing.T) {
	body, err := os.ReadFile("../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev, err := p.Parse(body, event.Hints{ReceivedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	want, err := event.AppendCanonical(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLean()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the pooled buffer is reused
		got, err := l.canonical(body, now)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("R3 appends\n%s\nthe intake queues\n%s", got, want)
		}
	}
}

func TestLean_refuses_a_context_without_a_message_name(t *testing.T) {
	l, err := newLean()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.canonical([]byte(`{"PrimaryEntityName":"account"}`), time.Now()); err == nil {
		t.Fatal("accepted")
	}
}
