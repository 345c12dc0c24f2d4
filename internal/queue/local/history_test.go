package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

func eventMsg(eventID, recordID string) *queue.Message {
	return &queue.Message{
		MessageID: eventID, CorrelationID: "corr-" + eventID, Subject: "Update",
		Body:                  []byte(fmt.Sprintf(`{"EventName":"Update","RecordId":%q,"EventId":%q}`, recordID, eventID)),
		ApplicationProperties: map[string]any{queue.PropEntity: "opportunity", queue.PropEventName: "Update"},
	}
}

func settleNext(t *testing.T, q *Queue, clock *manualClock, out queue.Outcome) {
	t.Helper()
	got := mustReceive(t, q, 1)
	clock.Advance(120 * time.Millisecond)
	if err := q.Settle(context.Background(), queue.DeliveryOf(got[0]), out); err != nil {
		t.Fatalf("settle: %v", err)
	}
	historyWritten(t, q)
}

// historyWritten waits until every change handed to the writer so far is committed: the writer
// takes changes in order, so an empty change behind them commits with or after them.
func historyWritten(t *testing.T, q *Queue) {
	t.Helper()
	if err := q.write(context.Background(), survivesProcessCrash, func(context.Context, *sql.Tx, int64) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestHistory_tells_a_records_story_from_accepted_to_completed_after_a_resubmit(t *testing.T) {
	ctx := context.Background()
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now})
	mustPublish(t, q, eventMsg("ev-1", "rec-1"))
	mustPublish(t, q, eventMsg("ev-other", "rec-2"))

	settleNext(t, q, clock, queue.Outcome{Kind: queue.RetryLater, RetryAt: clock.Now(), Attempt: 2, Step: "erp-sync",
		Description: "route sync step erp-sync: POST ${DVRELAY_ERP_URL}: 503 Service Unavailable: busy"})
	settleNext(t, q, clock, queue.Outcome{Kind: queue.Complete, Summary: "complete: 1 steps"}) // ev-other
	settleNext(t, q, clock, queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: "erp-sync",
		Description: "route sync step erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request: " + strings.Repeat("x", 2000)})
	dls, err := q.QueryDeadLetters(ctx, queue.DeadLetterFilter{})
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters = %v, %v", dls, err)
	}
	if _, err := q.Resubmit(ctx, dls[0].SequenceNumber); err != nil {
		t.Fatal(err)
	}
	settleNext(t, q, clock, queue.Outcome{Kind: queue.Complete, Summary: "complete: 1 steps"})

	for _, key := range []string{"rec-1", "ev-1", "corr-ev-1"} {
		h, err := q.EventHistory(ctx, queue.HistoryQuery{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range h {
			kinds = append(kinds, e.Kind)
		}
		want := "accepted retrying dead-lettered resubmitted completed"
		if got := strings.Join(kinds, " "); got != want {
			t.Fatalf("history of %s = %q, want %q", key, got, want)
		}
		if h[1].Status != 503 || h[2].Status != 400 || h[2].Step != "erp-sync" || h[2].Attempt != 2 {
			t.Errorf("attempt entries = %+v / %+v, want 503 then 400 at erp-sync, attempt 2", h[1], h[2])
		}
		if h[1].Duration != 120*time.Millisecond {
			t.Errorf("duration = %s, want the 120ms from receive to settle", h[1].Duration)
		}
		if len(h[2].Detail) > queue.MaxHistoryDetail || !strings.Contains(h[2].Detail, "400 Bad Request") {
			t.Errorf("detail = %d bytes %.80q…, want the answer excerpt within %d bytes", len(h[2].Detail), h[2].Detail, queue.MaxHistoryDetail)
		}
	}
	a, err := q.Activity(ctx, clock.Now().Add(-time.Hour), time.Minute, 61)
	if err != nil {
		t.Fatal(err)
	}
	if a.Total(queue.HistAccepted) != 2 || a.Total(queue.HistCompleted) != 2 || a.Total(queue.HistDeadLettered) != 1 {
		t.Errorf("activity = %v", a.Counts)
	}
}

func TestHistory_is_bounded_by_count(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{HistoryMaxEntries: 10})
	for i := range historyPruneEvery + 5 {
		mustPublish(t, q, eventMsg(fmt.Sprintf("ev-%d", i), "rec"))
	}
	h, err := q.EventHistory(context.Background(), queue.HistoryQuery{Key: "rec", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) > 10+historyPruneEvery {
		t.Errorf("history holds %d entries, want at most %d", len(h), 10+historyPruneEvery)
	}
	if len(h) > 20 {
		t.Errorf("history holds %d entries right after a prune, want about 10", len(h))
	}
}

func TestGroupDeadLetters_counts_by_reason_step_and_entity(t *testing.T) {
	ctx := context.Background()
	q := openTestQueue(t, t.TempDir(), Options{})
	for i := range 3 {
		m := eventMsg(fmt.Sprintf("ev-%d", i), "rec")
		m.ApplicationProperties[queue.PropFailedStep] = "erp-sync"
		if err := q.DeadLetter(ctx, m, queue.ReasonPermanentFailure, "400"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.DeadLetter(ctx, eventMsg("ev-x", "rec"), queue.ReasonInvalidMessage, "bad"); err != nil {
		t.Fatal(err)
	}
	g, err := q.GroupDeadLetters(ctx, queue.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[0].Count != 3 || g[0].Step != "erp-sync" || g[0].Entity != "opportunity" || g[1].Count != 1 {
		t.Errorf("groups = %+v", g)
	}
}

func TestHistory_is_bounded_by_age(t *testing.T) {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, HistoryMaxAge: time.Hour})
	mustPublish(t, q, eventMsg("ev-old", "rec-old"))
	clock.Advance(2 * time.Hour)
	for i := range historyPruneEvery {
		mustPublish(t, q, eventMsg(fmt.Sprintf("ev-%d", i), "rec"))
	}
	h, err := q.EventHistory(context.Background(), queue.HistoryQuery{Key: "rec-old"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 0 {
		t.Errorf("an entry older than HistoryMaxAge is still there: %+v", h)
	}
	a, err := q.Activity(context.Background(), clock.Now().Add(-3*time.Hour), time.Hour, 4)
	if err != nil {
		t.Fatal(err)
	}
	if a.Counts[1][queue.HistAccepted] != 0 || a.Total(queue.HistAccepted) != historyPruneEvery {
		t.Errorf("activity = %v, want the old minute's count gone and %d accepted now", a.Counts, historyPruneEvery)
	}
}

func TestHistory_records_each_attempt_of_a_retry_in_place_under_its_one_row(t *testing.T) {
	ctx := context.Background()
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now})
	mustPublish(t, q, eventMsg("ev-1", "rec-1"))
	var seqs []int64
	for attempt := 2; attempt <= 3; attempt++ {
		got := mustReceive(t, q, 1)
		seqs = append(seqs, got[0].SequenceNumber)
		if err := q.Settle(ctx, queue.DeliveryOf(got[0]), queue.Outcome{Kind: queue.RetryLater, RetryAt: clock.Now(),
			Attempt: attempt, Step: "erp-sync", Description: "POST ${DVRELAY_ERP_URL}: 503 Service Unavailable"}); err != nil {
			t.Fatal(err)
		}
	}
	got := mustReceive(t, q, 1)
	seqs = append(seqs, got[0].SequenceNumber)
	if err := q.Settle(ctx, queue.DeliveryOf(got[0]), queue.Outcome{Kind: queue.Complete, Summary: "complete: 1 steps"}); err != nil {
		t.Fatal(err)
	}
	historyWritten(t, q)
	if seqs[0] != seqs[1] || seqs[1] != seqs[2] {
		t.Errorf("sequence numbers of the attempts = %v, want one row retried in place", seqs)
	}
	h, err := q.EventHistory(ctx, queue.HistoryQuery{Key: "rec-1"})
	if err != nil {
		t.Fatal(err)
	}
	var saw []string
	for _, e := range h {
		saw = append(saw, fmt.Sprintf("%s/%d", e.Kind, e.Attempt))
	}
	if got, want := strings.Join(saw, " "), "accepted/0 retrying/1 retrying/2 completed/3"; got != want {
		t.Errorf("history = %q, want %q: every attempt of the retry in place, under the one event", got, want)
	}
}

func TestSettle_writes_the_outcome_entry_with_the_settlement_and_none_when_the_lock_ran_out(t *testing.T) {
	ctx := context.Background()
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, LockDuration: time.Second})
	mustPublish(t, q, eventMsg("ev-late", "rec-1"))
	mustPublish(t, q, eventMsg("ev-on-time", "rec-2"))
	kinds := func(key string) []string {
		t.Helper()
		entries, err := q.EventHistory(ctx, queue.HistoryQuery{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Kind)
		}
		return out
	}

	late := mustReceive(t, q, 1)[0]
	clock.Advance(2 * time.Second)
	if err := q.Settle(ctx, queue.DeliveryOf(late), queue.Outcome{Kind: queue.Complete}); !errors.Is(err, queue.ErrLockLost) {
		t.Fatalf("settling after the lock ran out: %v, want ErrLockLost", err)
	}
	if got := kinds("ev-late"); strings.Join(got, ",") != queue.HistAccepted {
		t.Errorf("history of an outcome whose lock ran out = %v, want only %q", got, queue.HistAccepted)
	}

	onTime := mustReceive(t, q, 1)[0]
	if onTime.MessageID != "ev-on-time" {
		onTime = mustReceive(t, q, 1)[0]
	}
	if err := q.Settle(ctx, queue.DeliveryOf(onTime), queue.Outcome{Kind: queue.Complete}); err != nil {
		t.Fatal(err)
	}
	// No wait for the writer: the entry is committed with the settlement it records.
	if got := kinds("ev-on-time"); strings.Join(got, ",") != queue.HistAccepted+","+queue.HistCompleted {
		t.Errorf("history right after the settlement = %v, want accepted then completed", got)
	}
}
