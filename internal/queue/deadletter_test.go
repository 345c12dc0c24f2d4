package queue

import (
	"strings"
	"testing"
	"time"
)

func TestHistory_fills_in_implied_ids_and_orders_chains_as_they_happened(t *testing.T) {
	at := time.Date(2025, 11, 25, 7, 0, 0, 0, time.UTC)
	got := History([]Sighting{
		{MessageID: "e/resubmit/2/retry/2", State: SeenDeadLettered, Seq: 9, At: at.Add(3 * time.Hour)},
		{MessageID: "e/resubmit/10", State: SeenQueued, At: at.Add(4 * time.Hour)},
		{MessageID: "e/retry/3", State: SeenPublished, At: at.Add(time.Hour)},
		{MessageID: "e/retry/3", State: SeenDeadLettered, Seq: 4, At: at.Add(2 * time.Hour)},
	})
	var lines []string
	for _, s := range got {
		lines = append(lines, s.MessageID+" "+s.State)
	}
	want := []string{
		"e implied", "e/retry/2 implied", "e/retry/3 dead-lettered",
		"e/resubmit/2 implied", "e/resubmit/2/retry/2 dead-lettered",
		"e/resubmit/10 queued",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("History =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if s := got[2]; s.Seq != 4 || s.Attempt != 3 || !s.At.Equal(at.Add(2*time.Hour)) {
		t.Errorf("e/retry/3 = %+v, want the dead letter's sequence number, attempt and time", s)
	}
}

func TestDeadLetterFilter_matches_reason_and_entity_ignoring_ASCII_case_only(t *testing.T) {
	d := DeadLettered{Message: Message{MessageID: "e/retry/2", ApplicationProperties: map[string]any{PropEntity: "opportunity"}},
		SequenceNumber: 3, Reason: "PermanentFailure"}
	for _, tt := range []struct {
		f    DeadLetterFilter
		want bool
	}{
		{DeadLetterFilter{}, true},
		{DeadLetterFilter{Reason: "PERMANENTFAILURE", Entity: "Opportunity"}, true},
		{DeadLetterFilter{Reason: "PermanentFailurе"}, false}, // a Cyrillic е: no Unicode folding
		{DeadLetterFilter{EventID: "e"}, true},
		{DeadLetterFilter{EventID: "e/retry"}, false},
		{DeadLetterFilter{AfterSeq: 3}, false},
		{DeadLetterFilter{Seq: 4}, false},
	} {
		if got := tt.f.Match(d); got != tt.want {
			t.Errorf("%+v.Match = %v, want %v", tt.f, got, tt.want)
		}
	}
}
