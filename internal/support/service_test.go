package support_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
)

func TestSearchKey_reads_a_pasted_dataverse_record_url(t *testing.T) {
	for in, want := range map[string]string{
		"https://org.crm4.dynamics.com/main.aspx?appid=1&pagetype=entityrecord&etn=opportunity&id=%7BA1B2C3D4-0000-0000-0000-000000000001%7D": "a1b2c3d4-0000-0000-0000-000000000001",
		"https://org.crm.dynamics.com/api/data/v9.2/opportunities(a1b2c3d4-0000-0000-0000-000000000002)":                                      "a1b2c3d4-0000-0000-0000-000000000002",
		"  {A1B2C3D4-0000-0000-0000-000000000003} ": "a1b2c3d4-0000-0000-0000-000000000003",
		"corr-42": "corr-42",
	} {
		if got := support.SearchKey(in); got != want {
			t.Errorf("SearchKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestService_lists_a_records_events_in_order_with_their_outcomes(t *testing.T) {
	ctx := context.Background()
	q, err := local.Open(ctx, t.TempDir(), local.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	for _, id := range []string{"ev-1", "ev-2"} {
		if err := q.Publish(ctx, &queue.Message{MessageID: id, CorrelationID: "c-" + id,
			Body: []byte(`{"RecordId":"rec-1"}`),
			ApplicationProperties: map[string]any{queue.PropEntity: "opportunity",
				queue.PropOrderKey: queue.OrderKey("opportunity", "rec-1")}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, out := range []queue.Outcome{
		{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: "erp-sync", Description: "POST erp: 400 Bad Request: no such account"},
		{Kind: queue.Complete},
	} {
		got, err := q.Receive(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Settle(ctx, queue.DeliveryOf(got[0]), out); err != nil {
			t.Fatal(err)
		}
	}
	s := &support.Service{Source: support.Backend{Q: q}, History: q, Grouper: q, Stats: q.Stats}
	var rec support.Record
	// An attempt's entry rides the writer's next commit after the settlement: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if rec, err = s.Record(ctx, "rec-1"); err != nil {
			t.Fatal(err)
		}
		if len(rec.Events) == 2 && rec.Events[1].Outcome == queue.HistCompleted || time.Now().After(deadline) {
			break
		}
	}
	if len(rec.Events) != 2 || rec.Events[0].EventID != "ev-1" || rec.Events[0].Outcome != queue.HistDeadLettered ||
		rec.Events[1].Outcome != queue.HistCompleted {
		t.Fatalf("record = %+v", rec.Events)
	}
	if rec.Events[0].Cause != "erp-sync: POST erp: 400 Bad Request: no such account" {
		t.Errorf("cause = %q", rec.Events[0].Cause)
	}
	p, err := s.Preview(ctx, support.Selection{Filter: queue.DeadLetterFilter{Reason: queue.ReasonPermanentFailure}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Targets) != 1 || p.NewerDone[p.Targets[0].Seq] != "ev-2" {
		t.Errorf("preview = %+v, want ev-1 flagged: ev-2 of its record completed since", p)
	}
	// The admin client answers the same check from the dead letter's detail.
	seq := p.Targets[0].Seq
	for name, src := range map[string]support.Source{"backend": support.Backend{Q: q}, "detail only": detailOnly{support.Backend{Q: q}}} {
		c, err := support.NewerCompleted(ctx, src, seq)
		if err != nil || c == nil || queue.BaseID(c.MessageID) != "ev-2" {
			t.Fatalf("%s: NewerCompleted = %+v, %v; want ev-2", name, c, err)
		}
		w := support.NewerWarning(*p.Targets[0].D, c)
		if !strings.Contains(w, "event ev-2 of record opportunity/rec-1") || !strings.Contains(w, "older data over newer") {
			t.Errorf("%s: warning = %q", name, w)
		}
	}
	o, err := s.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o.Hour.Total(queue.HistAccepted) != 2 || o.Stats.DeadLettered != 1 || len(o.Reasons) != 1 {
		t.Errorf("overview = %+v", o)
	}
	sum, err := s.Resubmit(ctx, support.Selection{Filter: queue.DeadLetterFilter{Since: time.Now().Add(-time.Hour)}}, "test")
	if err != nil || sum.Done != 1 {
		t.Errorf("resubmit = %+v, %v", sum, err)
	}
}

// detailOnly is a Source that reads dead letters whole, as the admin client does.
type detailOnly struct{ support.Source }
