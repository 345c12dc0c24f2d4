package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dvrelay/dvrelay/internal/metrics"
)

// scrapeMetrics gets /metrics from a running serve and parses it with the Prometheus text parser.
func scrapeMetrics(t *testing.T, addr string, header http.Header) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return families
}

// sample is one series' value (a histogram's count); absent reads as 0, as Prometheus's
// increase() treats a series that starts with the event.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			found := false
			for i := 0; i < len(labels); i += 2 {
				if labels[i] == l.GetName() && labels[i+1] == l.GetValue() {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func TestServe_metrics_count_what_flows_through_intake_worker_and_queue(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":640}`), newDownstream(t, `{}`)
	auth := http.Header{"X-Dvrelay-Secret": {"s3cret"}}
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp, "DVRELAY_WEBHOOK_SECRET=s3cret"))

	// /metrics is guarded by the webhook's secret, as the support routes are.
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the secret: %d, want 401", resp.StatusCode)
	}

	accept := func() accepted {
		t.Helper()
		resp, b, err := post(context.Background(), p.addr, sampleEvent(t), auth)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("post: %v %s", err, b)
		}
		var a accepted
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	before := scrapeMetrics(t, p.addr, auth)
	moved := func(after map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		return sample(after, name, labels...) - sample(before, name, labels...)
	}

	ok := accept()
	eventually(t, "the event at the ERP", func() bool { return erp.count(ok.EventID) == 1 })
	eventually(t, "the complete outcome counted", func() bool {
		return moved(scrapeMetrics(t, p.addr, auth), metrics.EventsProcessed, "outcome", "complete", "reason", "") == 1
	})

	credit.answer(func(string) int { return http.StatusBadRequest }, `{"message":"customer account is blocked"}`)
	accept()
	eventually(t, "the dead letter counted", func() bool {
		return moved(scrapeMetrics(t, p.addr, auth), metrics.EventsProcessed, "outcome", "dead-letter", "reason", "PermanentFailure") == 1
	})
	eventually(t, "the dead letter parked", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })
	// A wrong secret is counted too, by its status.
	if resp, _, err := post(context.Background(), p.addr, sampleEvent(t), nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("post without the secret: %v %v", resp, err)
	}

	after := scrapeMetrics(t, p.addr, auth)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{metrics.IntakeRequests, []string{"code", "202"}, 2},
		{metrics.IntakeRequests, []string{"code", "401"}, 1},
		{metrics.EventsPublished, nil, 2},
		{metrics.EventsProcessed, []string{"outcome", "complete", "reason", ""}, 1},
		{metrics.EventsProcessed, []string{"outcome", "dead-letter", "reason", "PermanentFailure"}, 1},
		{metrics.RetriesScheduled, nil, 0},
		{metrics.StepDuration, []string{"route", "credit-check", "step", "credit-score", "result", "ok"}, 1},
		{metrics.StepDuration, []string{"route", "credit-check", "step", "credit-score", "result", "permanent"}, 1},
		{metrics.StepDuration, []string{"route", "credit-check", "step", "erp-sync", "result", "ok"}, 1},
	} {
		if got := moved(after, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := sample(after, metrics.QueueDeadLettered); got != 1 {
		t.Errorf("%s = %v, want 1", metrics.QueueDeadLettered, got)
	}
	if _, ok := after[metrics.QueueQueued]; !ok {
		t.Errorf("%s is missing on the embedded queue", metrics.QueueQueued)
	}
}
