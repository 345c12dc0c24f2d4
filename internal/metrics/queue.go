package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueCollector counts the queue when scraped, so the gauges are as fresh as the scrape and
// nothing polls the queue between scrapes.
type queueCollector struct {
	stats   func(ctx context.Context) (QueueStats, error)
	timeout time.Duration

	queued, scheduled, deadLettered, oldestAge *prometheus.Desc
}

func newQueueCollector(stats func(ctx context.Context) (QueueStats, error), timeout time.Duration) *queueCollector {
	return &queueCollector{
		stats:   stats,
		timeout: timeout,
		queued: prometheus.NewDesc(QueueQueued,
			"Messages on the main queue that are due: waiting for the worker or being processed.", nil, nil),
		scheduled: prometheus.NewDesc(QueueScheduled,
			"Messages on the main queue waiting for their scheduled time (retries after back-off).", nil, nil),
		deadLettered: prometheus.NewDesc(QueueDeadLettered,
			"Messages on the dead-letter queue, waiting for support.", nil, nil),
		oldestAge: prometheus.NewDesc(QueueOldestAge,
			"How long the oldest due message has waited; 0 when none is due. Rising means the worker is not keeping up.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.scheduled
	ch <- c.deadLettered
	ch <- c.oldestAge
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	// Collect has no context of its own; the count gets a short one, so a stuck queue costs a
	// scrape its gauges, not its answer.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.queued, fmt.Errorf("count the queue: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(c.scheduled, prometheus.GaugeValue, float64(s.Scheduled))
	ch <- prometheus.MustNewConstMetric(c.deadLettered, prometheus.GaugeValue, float64(s.DeadLettered))
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, s.OldestQueuedAge.Seconds())
}
