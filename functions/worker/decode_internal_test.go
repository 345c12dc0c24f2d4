package worker

import (
	"errors"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func TestSizeExceeded_reads_Dataverses_flag_unless_it_says_false(t *testing.T) {
	for _, c := range []struct {
		props map[string]any
		want  bool
	}{
		{nil, false},
		{map[string]any{"MessageMaxSizeExceeded": true}, true},
		{map[string]any{"MessageMaxSizeExceeded": "True"}, true},
		{map[string]any{"MessageMaxSizeExceeded": ""}, true},
		{map[string]any{"MessageMaxSizeExceeded": int64(1)}, true},
		{map[string]any{"MessageMaxSizeExceeded": false}, false},
		{map[string]any{"MessageMaxSizeExceeded": " false "}, false},
	} {
		if got := sizeExceeded(c.props); got != c.want {
			t.Errorf("sizeExceeded(%v) = %v", c.props, got)
		}
	}
}

// countingDecoder is the real parser, counting which decoder the worker asked.
type countingDecoder struct {
	*event.Parser
	checked, marked int
}

func (c *countingDecoder) DecodeCanonical(body []byte) (event.Event, error) {
	c.checked++
	return c.Parser.DecodeCanonical(body)
}

func (c *countingDecoder) DecodeMarked(body []byte) (event.Event, error) {
	c.marked++
	return c.Parser.DecodeMarked(body)
}

func TestDecode_trusts_the_intakes_mark_and_checks_everything_else(t *testing.T) {
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"SchemaVersion":"1.1","EventId":"5b1d4c1e-93d7-4a5b-8e61-0c4f7a9d3b12","CorrelationId":"c1",` +
		`"EventName":"AccountUpdated","Entity":"account","Message":"Update","RecordId":"2f8b4c1e-93d7-4a5b-8e61-0c4f7a9d3b12",` +
		`"ChangedFields":["name"],"Attributes":{"name":"Contoso"},"TriggeredBy":"","Timestamp":"2026-01-02T03:04:05Z","Source":"dataverse-webhook"}`)
	for _, c := range []struct {
		name                  string
		props                 map[string]any
		wantChecked, wantMark int
	}{
		{"marked by the intake", map[string]any{event.PropCanonical: event.CanonicalSum(body)}, 0, 1},
		{"not marked", map[string]any{}, 1, 0},
		{"marked for other bytes", map[string]any{event.PropCanonical: event.CanonicalSum([]byte("{}"))}, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec := &countingDecoder{Parser: p}
			w := &Worker{decoder: dec}
			got, err := w.decode(queue.Delivery{Body: body, ApplicationProperties: c.props})
			if err != nil {
				t.Fatal(err)
			}
			if got.event.EventName != "AccountUpdated" || string(got.event.Attributes["name"]) != `"Contoso"` {
				t.Errorf("decoded %+v", got.event)
			}
			if dec.checked != c.wantChecked || dec.marked != c.wantMark {
				t.Errorf("checked %d times and trusted %d, want %d and %d", dec.checked, dec.marked, c.wantChecked, c.wantMark)
			}
		})
	}
}

func TestDecode_refuses_an_invalid_event_that_carries_no_mark(t *testing.T) {
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	w := &Worker{decoder: p}
	_, err = w.decode(queue.Delivery{Body: []byte(`{"SchemaVersion":"1.1","EventName":"not a name!"}`), ApplicationProperties: map[string]any{}})
	var verr *event.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a validation error", err)
	}
}
