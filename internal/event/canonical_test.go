package event_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

func TestDecodeCanonical_round_trips_what_Parse_produced(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "opportunity-update.json"), event.Hints{ReceivedAt: receivedAt})
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.DecodeCanonical(body)
	if err != nil {
		t.Fatalf("DecodeCanonical: %v", err)
	}
	again, _ := json.Marshal(got)
	if string(again) != string(body) {
		t.Errorf("round trip changed the event:\n got %s\nwant %s", again, body)
	}
}

func TestDecodeCanonical_accepts_an_event_built_in_Go_with_nil_slices(t *testing.T) {
	p := newParser(t)
	body, _ := json.Marshal(event.Event{
		SchemaVersion: event.SchemaVersion,
		EventID:       "0f8e3a52-4b8e-5d61-9a0c-1d2e3f405162",
		CorrelationID: "corr-1",
		EventName:     "OpportunityUpdated",
		RecordID:      "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",
		TriggeredBy:   "someone",
		Timestamp:     "2025-11-25T07:04:05Z",
		Source:        event.SourcePlugin,
	})
	if _, err := p.DecodeCanonical(body); err != nil {
		t.Errorf("DecodeCanonical(%s): %v", body, err)
	}
}

func TestDecodeCanonical_rejects_a_poison_message_before_anything_runs(t *testing.T) {
	p := newParser(t)
	valid, _ := json.Marshal(parse(t, p, sample(t, "opportunity-update.json"), event.Hints{ReceivedAt: receivedAt}))
	tests := []struct {
		name   string
		change func(m map[string]any)
		want   []string
	}{
		{"missing EventId", func(m map[string]any) { delete(m, "EventId") }, []string{"/EventId"}},
		{"non-GUID RecordId", func(m map[string]any) { m["RecordId"] = "42" }, []string{"/RecordId"}},
		{"unknown Source", func(m map[string]any) { m["Source"] = "email" }, []string{"/Source"}},
		{"unknown SchemaVersion", func(m map[string]any) { m["SchemaVersion"] = "2.0" }, []string{"/SchemaVersion"}},
		{"impossible Timestamp", func(m map[string]any) { m["Timestamp"] = "2025-02-30T00:00:00Z" }, []string{"/Timestamp"}},
		{"Timestamp without an offset", func(m map[string]any) { m["Timestamp"] = "2025-11-25T07:04:05" }, []string{"/Timestamp"}},
		{"attribute name that is not a logical name", func(m map[string]any) {
			m["Attributes"].(map[string]any)["Estimated Value"] = 1
		}, []string{"/Attributes"}},
		{"ChangedFields as a string", func(m map[string]any) { m["ChangedFields"] = "name" }, []string{"/ChangedFields"}},
		{"a key that differs only in case", func(m map[string]any) { m["recordId"] = "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d9" }, []string{"/recordId"}},
		{"three problems at once", func(m map[string]any) {
			delete(m, "EventName")
			m["Depth"] = -1
			m["CorrelationId"] = "has spaces"
		}, []string{"/CorrelationId", "/Depth", "/EventName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.DecodeCanonical(mutate(t, valid, tt.change))
			if got := pointers(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("pointers = %q, want %q (%v)", got, tt.want, err)
			}
			var verr *event.ValidationError
			if errors.As(err, &verr) && verr.Kind != event.KindCanonicalEvent {
				t.Errorf("Kind = %s", verr.Kind)
			}
		})
	}
	if _, err := p.DecodeCanonical([]byte(`{"EventId":`)); !errors.Is(err, event.ErrMalformed) {
		t.Errorf("truncated body: %v, want ErrMalformed", err)
	}
}

func TestParser_is_safe_for_concurrent_use(t *testing.T) {
	p := newParser(t)
	body := sample(t, "opportunity-update.json")
	want := parse(t, p, body, event.Hints{ReceivedAt: receivedAt}).EventID
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				ev, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
				if err == nil && ev.EventID != want {
					err = errors.New("EventId changed under concurrency: " + ev.EventID)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestDecodeCanonical_refuses_a_Timestamp_offset_beyond_23_59(t *testing.T) {
	p := newParser(t)
	valid := mustMarshal(t, parse(t, p, sample(t, "plugin-event.json"), event.Hints{}))
	for _, ts := range []string{"2025-11-25T07:04:05+24:00", "2025-11-25T07:04:05+23:60"} {
		_, err := p.DecodeCanonical(mutate(t, valid, func(m map[string]any) { m["Timestamp"] = ts }))
		if got := pointers(t, err); !slices.Equal(got, []string{"/Timestamp"}) {
			t.Errorf("%s: pointers = %q (%v)", ts, got, err)
		}
	}
}
