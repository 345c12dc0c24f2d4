package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func TestLogStep_writes_triggeredBy_only_when_it_is_a_GUID(t *testing.T) {
	tests := []struct {
		name, triggeredBy string
		want              any // nil: the key is absent
	}{
		{"a systemuser id", userID, userID},
		{"a user name from a plugin event", "Jane Doe (jane.doe@contoso.com)", nil},
		{"a GUID with trailing text", userID + " Jane", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) { ev["TriggeredBy"] = tt.triggeredBy }), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			events := 0
			for _, l := range h.logs.lines(t) {
				if l["msg"] != "event" {
					continue
				}
				events++
				if got := l["triggeredBy"]; got != tt.want {
					t.Errorf("event line triggeredBy = %v, want %v", got, tt.want)
				}
			}
			if events == 0 {
				t.Fatal("no event log line")
			}
			if tt.want == nil && strings.Contains(h.logs.String(), "Jane") {
				t.Errorf("logs carry the user name:\n%s", h.logs)
			}
		})
	}
}
