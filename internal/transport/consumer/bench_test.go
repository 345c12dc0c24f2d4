package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/transport/consumer"
)

// BenchmarkConsumer_drains_the_embedded_queue measures the loop's own cost end to end on a real
// file: receive, a worker that completes at once, and the durable settlement.
func BenchmarkConsumer_drains_the_embedded_queue(b *testing.B) {
	q, err := local.Open(context.Background(), b.TempDir(), local.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var published sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range b.N {
		sem <- struct{}{}
		published.Go(func() {
			defer func() { <-sem }()
			if err := q.Publish(context.Background(), event(i, 0)); err != nil {
				b.Error(err)
			}
		})
	}
	published.Wait()

	var processed atomic.Int64
	drained := make(chan struct{})
	p := processorFunc(func(context.Context, queue.Delivery) queue.Outcome {
		if processed.Add(1) == int64(b.N) {
			close(drained)
		}
		return queue.Outcome{Kind: queue.Complete}
	})
	ctx, cancel := context.WithCancel(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() { done <- consumer.New(q, p, consumer.Options{}, nil).Run(ctx) }()
	<-drained
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkConsumer_against_a_50ms_worker prices what the loop adds to each message when the work
// itself waits on a downstream: the ideal is concurrency ÷ 50 ms, and each receive and settlement
// (a durable write each) that a place waits for takes from it. Every event is its own record.
func BenchmarkConsumer_against_a_50ms_worker(b *testing.B) {
	for _, concurrency := range []int{16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			benchDrain(b, concurrency, concurrency*20, 0)
		})
	}
}

// BenchmarkConsumer_drains_100_records_of_20_events_against_a_50ms_worker is per-record order at
// work: a record's events run one at a time, so the drain is bounded by
// min(concurrency, records) ÷ 50 ms; with 100 records both concurrencies stay below that bound
// and the ideal is concurrency ÷ 50 ms, as for distinct records.
func BenchmarkConsumer_drains_100_records_of_20_events_against_a_50ms_worker(b *testing.B) {
	for _, concurrency := range []int{16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			benchDrain(b, concurrency, 100*20, 100)
		})
	}
}

// event is message i of a drain: of record i mod records, or its own record when records is 0.
// "OrderKey" is spelled out so the benchmark runs unchanged on a tree from before order keys.
func event(i, records int) *queue.Message {
	key := i
	if records > 0 {
		key = i % records
	}
	return &queue.Message{MessageID: fmt.Sprintf("evt-%d", i), Body: []byte(`{}`),
		ApplicationProperties: map[string]any{"OrderKey": fmt.Sprintf("opportunity/%d", key)}}
}

func benchDrain(b *testing.B, concurrency, events, records int) {
	const latency = 50 * time.Millisecond
	var total time.Duration
	for range b.N {
		b.StopTimer()
		q, err := local.Open(context.Background(), b.TempDir(), local.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		for i := range events {
			if err := q.Publish(context.Background(), event(i, records)); err != nil {
				b.Fatal(err)
			}
		}
		var processed atomic.Int64
		drained := make(chan struct{})
		p := processorFunc(func(context.Context, queue.Delivery) queue.Outcome {
			time.Sleep(latency)
			if processed.Add(1) == int64(events) {
				close(drained)
			}
			return queue.Outcome{Kind: queue.Complete}
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		began := time.Now()
		go func() { done <- consumer.New(q, p, consumer.Options{Concurrency: concurrency}, nil).Run(ctx) }()
		<-drained
		total += time.Since(began)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		q.Close()
	}
	perSec := float64(events*b.N) / total.Seconds()
	b.ReportMetric(perSec, "events/s")
	b.ReportMetric(100*perSec/(float64(concurrency)/latency.Seconds()), "%ideal")
}
