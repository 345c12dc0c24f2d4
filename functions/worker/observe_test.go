package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// observed is one call of the step observer.
type observed struct {
	route, step string
	failure     worker.Class
}

func TestStepObserver_hears_every_step_that_ran_with_its_failure_class(t *testing.T) {
	h := newHarness(t)
	h.erp.script = func(int) reply { return reply{status: http.StatusBadRequest, body: `{}`} }
	var got []observed
	w := h.worker(t, worker.Config{}, func(d *worker.Deps) {
		d.ObserveStep = func(route, step string, took time.Duration, failure worker.Class) {
			if took < 0 {
				t.Errorf("%s/%s took %v", route, step, took)
			}
			got = append(got, observed{route, step, failure})
		}
	})
	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))
	if out.Kind != queue.DeadLetter {
		t.Fatalf("outcome %v, want a dead letter from the ERP's 400", out.Kind)
	}
	want := []observed{
		{"credit-check", "credit-score", 0},
		{"credit-check", "write-score", 0},
		{"credit-check", "erp-sync", worker.Permanent},
	}
	if len(got) != len(want) {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("observation %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
