package worker

import (
	"testing"
	"time"
)

func TestInPlacePolicy_waits_at_most_the_hold_and_spans_the_outage_budget(t *testing.T) {
	p := InPlacePolicy(DefaultRetryPolicy())
	var spent time.Duration
	for n := 1; n < p.MaxAttempts; n++ {
		d := p.LaterDelay(n, 0, 0)
		if d > InPlaceHold {
			t.Fatalf("delay after attempt %d is %v, longer than one invocation may wait (%v)", n, d, InPlaceHold)
		}
		spent += d
	}
	if spent < OutageBudget {
		t.Errorf("%d attempts wait %v in all, want at least %v", p.MaxAttempts, spent, OutageBudget)
	}
	if spent-OutageBudget >= InPlaceHold {
		t.Errorf("%d attempts wait %v, one more than the budget needs", p.MaxAttempts, spent)
	}
	t.Logf("in place: %d attempts spanning %v", p.MaxAttempts, spent)
}
