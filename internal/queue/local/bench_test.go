package local

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// The publish benchmarks write to a real file with synchronous=FULL, so every commit pays an
// fsync: they measure what the intake's 202 costs. events/s is the figure to compare.

func benchPublish(b *testing.B, opts Options, parallel bool) {
	q := openTestQueue(b, b.TempDir(), opts)
	body := []byte(`{"EventId":"00000000-0000-0000-0000-000000000000","EventName":"OpportunityUpdated","RecordId":"3f2c1d9e-5b7a-4c1e-9f0a-2b6d8e4c7a11","ChangedFields":["estimatedvalue","statuscode"]}`)
	var next atomic.Int64
	publish := func() {
		n := next.Add(1)
		err := q.Publish(context.Background(), &queue.Message{
			MessageID:             fmt.Sprintf("evt-%d", n),
			CorrelationID:         "corr",
			Subject:               "OpportunityUpdated",
			ContentType:           "application/json",
			Body:                  body,
			ApplicationProperties: map[string]any{queue.PropAttempt: int64(1), queue.PropEventName: "OpportunityUpdated"},
		})
		if err != nil {
			b.Error(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 publishers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				publish()
			}
		})
	} else {
		for b.Loop() {
			publish()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkPublish_single(b *testing.B) { benchPublish(b, Options{}, false) }

func BenchmarkPublish_concurrent(b *testing.B) { benchPublish(b, Options{}, true) }

// BenchmarkPublish_concurrent_without_group_commit prices group commit: the same 64 publishers,
// one transaction and one fsync each.
func BenchmarkPublish_concurrent_without_group_commit(b *testing.B) {
	benchPublish(b, Options{maxBatch: 1}, true)
}

// BenchmarkReceive_and_complete measures the consumer side as the consumer loop drives it: lock
// up to 16 messages at a time and complete them concurrently, so the completions share commits.
func BenchmarkReceive_and_complete(b *testing.B) {
	q := openTestQueue(b, b.TempDir(), Options{})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := q.Publish(context.Background(), msg(fmt.Sprintf("evt-%d", i))); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		got, err := q.Receive(context.Background(), 16)
		if err != nil {
			b.Fatal(err)
		}
		var settled sync.WaitGroup
		for _, r := range got {
			settled.Go(func() {
				if err := q.Complete(context.Background(), r); err != nil {
					b.Error(err)
				}
			})
		}
		settled.Wait()
		done += len(got)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
