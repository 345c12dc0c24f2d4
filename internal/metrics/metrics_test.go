package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/metrics"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// scrape serves m's handler once and parses the answer with the Prometheus text parser.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	m.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("scrape is not the Prometheus text format: %v", err)
	}
	return families
}

// value is the counter, gauge or histogram count of the series of name with exactly labels;
// ok is false when there is no such series.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func want(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string, v float64) {
	t.Helper()
	got, ok := value(families, name, labels)
	if !ok || got != v {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, v)
	}
}

type outcomes []queue.Outcome

func (o *outcomes) Process(context.Context, queue.Delivery) queue.Outcome {
	out := (*o)[0]
	*o = (*o)[1:]
	return out
}

func TestProcessor_counts_outcomes_dead_letter_reasons_and_retries(t *testing.T) {
	m := metrics.New(metrics.Options{})
	p := m.Processor(&outcomes{
		{Kind: queue.Complete},
		{Kind: queue.Complete},
		{Kind: queue.RetryLater, Reason: "ignored"},
		{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure},
	})
	for range 4 {
		p.Process(context.Background(), queue.Delivery{})
	}
	f := scrape(t, m)
	want(t, f, metrics.EventsProcessed, map[string]string{"outcome": "complete", "reason": ""}, 2)
	want(t, f, metrics.EventsProcessed, map[string]string{"outcome": "retry-later", "reason": ""}, 1)
	want(t, f, metrics.EventsProcessed, map[string]string{"outcome": "dead-letter", "reason": "PermanentFailure"}, 1)
	want(t, f, metrics.EventsProcessed, map[string]string{"outcome": "dead-letter", "reason": "InvalidMessage"}, 0)
	want(t, f, metrics.EventsProcessed, map[string]string{"outcome": "dead-letter", "reason": "UnsupportedMessageFormat"}, 0)
	want(t, f, metrics.RetriesScheduled, nil, 1)
}

type publisher struct{ err error }

func (p publisher) Publish(context.Context, *queue.Message) error { return p.err }

func TestPublisher_counts_only_events_the_queue_took(t *testing.T) {
	m := metrics.New(metrics.Options{})
	ok, failing := m.Publisher(publisher{}), m.Publisher(publisher{err: errors.New("disk full")})
	for range 2 {
		if err := ok.Publish(context.Background(), &queue.Message{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := failing.Publish(context.Background(), &queue.Message{}); err == nil {
		t.Error("the publisher's error was swallowed")
	}
	want(t, scrape(t, m), metrics.EventsPublished, nil, 2)
}

func TestIntake_counts_answers_by_status_code(t *testing.T) {
	m := metrics.New(metrics.Options{})
	status := http.StatusAccepted
	h := m.Intake(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	for _, s := range []int{http.StatusAccepted, http.StatusAccepted, http.StatusUnauthorized} {
		status = s
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/dataverse/webhook", nil))
	}
	f := scrape(t, m)
	want(t, f, metrics.IntakeRequests, map[string]string{"code": "202"}, 2)
	want(t, f, metrics.IntakeRequests, map[string]string{"code": "401"}, 1)
}

func TestObserveStep_keeps_a_latency_histogram_by_route_step_and_result(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveStep("credit-check", "erp-sync", 40*time.Millisecond, 0)
	m.ObserveStep("credit-check", "erp-sync", 3*time.Second, worker.Transient)
	m.ObserveStep("credit-check", "erp-sync", time.Second, worker.Permanent)
	f := scrape(t, m)
	for _, result := range []string{"ok", "transient", "permanent"} {
		want(t, f, metrics.StepDuration, map[string]string{"route": "credit-check", "step": "erp-sync", "result": result}, 1)
	}
}

func TestQueueGauges_come_from_stats_counted_at_scrape_time(t *testing.T) {
	calls := 0
	m := metrics.New(metrics.Options{})
	m.CountQueue(func(ctx context.Context) (metrics.QueueStats, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the queue is counted without a deadline")
		}
		return metrics.QueueStats{Queued: 3, Scheduled: 2, DeadLettered: 1, OldestQueuedAge: 90 * time.Second}, nil
	})
	if calls != 0 {
		t.Errorf("the queue was counted %d times before any scrape", calls)
	}
	f := scrape(t, m)
	want(t, f, metrics.QueueQueued, nil, 3)
	want(t, f, metrics.QueueScheduled, nil, 2)
	want(t, f, metrics.QueueDeadLettered, nil, 1)
	want(t, f, metrics.QueueOldestAge, nil, 90)
}

func TestQueueGauges_are_left_out_when_the_queue_cannot_be_counted(t *testing.T) {
	cases := map[string]func(context.Context) (metrics.QueueStats, error){
		"no stats (Service Bus)": nil,
		"counting failed": func(context.Context) (metrics.QueueStats, error) {
			return metrics.QueueStats{}, errors.New("database is locked")
		},
	}
	for name, stats := range cases {
		t.Run(name, func(t *testing.T) {
			m := metrics.New(metrics.Options{})
			if stats != nil {
				m.CountQueue(stats)
			}
			f := scrape(t, m)
			for _, g := range []string{metrics.QueueQueued, metrics.QueueScheduled, metrics.QueueDeadLettered, metrics.QueueOldestAge} {
				if _, ok := f[g]; ok {
					t.Errorf("%s is served although the queue was not counted: a zero would read as an empty queue", g)
				}
			}
			// The rest of the scrape still answers.
			want(t, f, metrics.EventsPublished, nil, 0)
		})
	}
}
