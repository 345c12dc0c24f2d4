// Package metrics exposes what an operator of `handler serve` graphs and alerts on, in the
// Prometheus text format: intake answers, events published and processed, step latency, retries
// and the queue's depth. It instruments by wrapping (the intake handler, the publisher, the
// worker's Processor) and through the worker's step observer, so the code it measures does not
// know it is measured. Every Metrics has its own registry: nothing is global.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Metric names, for dashboards, alerts and tests.
const (
	IntakeRequests    = "dvrelay_intake_requests_total"
	EventsPublished   = "dvrelay_events_published_total"
	EventsProcessed   = "dvrelay_events_processed_total"
	StepDuration      = "dvrelay_step_duration_seconds"
	RetriesScheduled  = "dvrelay_retries_scheduled_total"
	QueueQueued       = "dvrelay_queue_queued_messages"
	QueueScheduled    = "dvrelay_queue_scheduled_messages"
	QueueDeadLettered = "dvrelay_queue_dead_lettered_messages"
	QueueOldestAge    = "dvrelay_queue_oldest_queued_age_seconds"
)

// DefaultStatsTimeout bounds the queue count made at each scrape: a scrape must answer even
// when the queue is slow, and Prometheus's own default timeout is 10 s.
const DefaultStatsTimeout = 2 * time.Second

// Options tune New.
type Options struct {
	// StatsTimeout bounds one count of the queue (see CountQueue); 0 means DefaultStatsTimeout.
	StatsTimeout time.Duration
	// Log receives scrape errors; nil discards them.
	Log *slog.Logger
}

// QueueStats is the queue as counted at one moment.
type QueueStats struct {
	Queued          int           // available or being processed
	Scheduled       int           // retries waiting for their time
	DeadLettered    int           // parked for support
	OldestQueuedAge time.Duration // how long the oldest queued message has been due; 0 when none
}

// Metrics holds one process's metrics and the registry they are exposed from.
type Metrics struct {
	reg          *prometheus.Registry
	log          *slog.Logger
	statsTimeout time.Duration
	requests     *prometheus.CounterVec
	published    prometheus.Counter
	processed    *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	retries      prometheus.Counter
}

// New registers dvrelay's metrics, the Go runtime's and the process's on a registry of its own.
func New(opts Options) *Metrics {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.StatsTimeout <= 0 {
		opts.StatsTimeout = DefaultStatsTimeout
	}
	m := &Metrics{
		reg:          prometheus.NewRegistry(),
		log:          opts.Log,
		statsTimeout: opts.StatsTimeout,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: IntakeRequests,
			Help: "Webhook requests answered by the intake, by HTTP status code (202: queued).",
		}, []string{"code"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: EventsPublished,
			Help: "Events the intake handed to the queue; a re-post the queue dropped as a duplicate counts too.",
		}),
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: EventsProcessed,
			Help: "Deliveries the worker decided, by outcome (complete, retry-later, dead-letter) and dead-letter reason.",
		}, []string{"outcome", "reason"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: StepDuration,
			Help: "Time a route step took, quick in-process retries included, by route, step and result (ok, transient, permanent).",
			// From a local call to a slow ERP at its step timeout, quick retries included.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route", "step", "result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: RetriesScheduled,
			Help: "Deliveries the worker sent back to wait for a later attempt (back-off after transient failures).",
		}),
	}
	// The outcomes and reasons are known up front; their series exist from the start at 0, so a
	// rate() sees the first dead letter rather than a series that appears from nowhere.
	m.processed.WithLabelValues(queue.Complete.String(), "")
	m.processed.WithLabelValues(queue.RetryLater.String(), "")
	for _, r := range []string{queue.ReasonInvalidMessage, queue.ReasonPermanentFailure, queue.ReasonMaxAttemptsExceeded, queue.ReasonUnsupportedMessageFormat} {
		m.processed.WithLabelValues(queue.DeadLetter.String(), r)
	}
	m.reg.MustRegister(m.requests, m.published, m.processed, m.stepDuration, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// CountQueue adds the queue gauges, counted by stats at each scrape. Call it once, before
// serving, for a backend that can count; without it (Service Bus, which dvrelay cannot count)
// the gauges are left out rather than reported as zeros that read as an empty queue.
func (m *Metrics) CountQueue(stats func(ctx context.Context) (QueueStats, error)) {
	m.reg.MustRegister(newQueueCollector(stats, m.statsTimeout))
}

// Handler serves the registry in the Prometheus text format (or whatever the scraper
// negotiates). A metric that cannot be collected (the queue could not be counted) is logged and
// left out; the rest are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // counts its own scrapes and errors (promhttp_metric_handler_errors_total)
	})
}

// Intake counts the answers of the intake handler next by status code.
func (m *Metrics) Intake(next http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.requests, next)
}

// Publisher counts the events next accepts. When next can report duplicates, so can the
// publisher it returns: wrapping must not hide what the intake tells its caller.
func (m *Metrics) Publisher(next queue.Publisher) queue.Publisher {
	p := countingPublisher{next: next, published: m.published}
	if dr, ok := next.(queue.DuplicateReporter); ok {
		return countingReporter{countingPublisher: p, reporter: dr}
	}
	return p
}

type countingReporter struct {
	countingPublisher
	reporter queue.DuplicateReporter
}

func (p countingReporter) PublishReporting(ctx context.Context, msg *queue.Message) (bool, error) {
	duplicate, err := p.reporter.PublishReporting(ctx, msg)
	if err == nil {
		p.published.Inc()
	}
	return duplicate, err
}

type countingPublisher struct {
	next      queue.Publisher
	published prometheus.Counter
}

func (p countingPublisher) Publish(ctx context.Context, msg *queue.Message) error {
	err := p.next.Publish(ctx, msg)
	if err == nil {
		p.published.Inc()
	}
	return err
}

// Processor is the worker as the consumer loop drives it.
type Processor interface {
	Process(ctx context.Context, d queue.Delivery) queue.Outcome
}

// Processor counts the outcomes next decides.
func (m *Metrics) Processor(next Processor) Processor {
	return countingProcessor{next: next, m: m}
}

type countingProcessor struct {
	next Processor
	m    *Metrics
}

func (p countingProcessor) Process(ctx context.Context, d queue.Delivery) queue.Outcome {
	out := p.next.Process(ctx, d)
	reason := ""
	if out.Kind == queue.DeadLetter {
		reason = out.Reason
	}
	p.m.processed.WithLabelValues(out.Kind.String(), reason).Inc()
	if out.Kind == queue.RetryLater {
		p.m.retries.Inc()
	}
	return out
}

var _ worker.StepObserver = (*Metrics)(nil).ObserveStep

// ObserveStep records one step run; it is a worker.StepObserver.
func (m *Metrics) ObserveStep(route, step string, took time.Duration, failure worker.Class) {
	result := "ok"
	if failure != 0 {
		result = failure.String()
	}
	m.stepDuration.WithLabelValues(route, step, result).Observe(took.Seconds())
}
