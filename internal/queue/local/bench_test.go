package local

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
			MessageID:     fmt.Sprintf("evt-%d", n),
			CorrelationID: "corr",
			Subject:       "OpportunityUpdated",
			ContentType:   "application/json",
			Body:          body,
			// Each event its own record, as distinct records reach the intake ("OrderKey" spelled
			// out so the benchmark runs unchanged on a tree from before order keys).
			ApplicationProperties: map[string]any{queue.PropAttempt: int64(1), queue.PropEventName: "OpportunityUpdated",
				"OrderKey": fmt.Sprintf("opportunity/%d", n)},
		})
		if err != nil {
			b.Error(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpuAtStart := processCPU()
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
	// The CPU each publish costs, which a shared disk's fsync times do not blur as they blur events/s.
	b.ReportMetric(float64((processCPU()-cpuAtStart).Microseconds())/float64(b.N), "cpu-µs/op")
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
	benchReceiveAndSettle(b, func(q *Queue, r *queue.Received) error {
		return q.Complete(context.Background(), r)
	})
}

// BenchmarkReceive_and_settle is the same through Settle, as the worker settles: the completion
// and its history entry.
func BenchmarkReceive_and_settle(b *testing.B) {
	benchReceiveAndSettle(b, func(q *Queue, r *queue.Received) error {
		return q.Settle(context.Background(), queue.DeliveryOf(r), queue.Outcome{Kind: queue.Complete, Summary: "complete: 1 steps"})
	})
}

func benchReceiveAndSettle(b *testing.B, settle func(q *Queue, r *queue.Received) error) {
	q := openTestQueue(b, b.TempDir(), Options{})
	publishConcurrently(b, q, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpuAtStart := processCPU()
	for done := 0; done < b.N; {
		got, err := q.Receive(context.Background(), 16)
		if err != nil {
			b.Fatal(err)
		}
		var settled sync.WaitGroup
		for _, r := range got {
			settled.Go(func() {
				if err := settle(q, r); err != nil {
					b.Error(err)
				}
			})
		}
		settled.Wait()
		done += len(got)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((processCPU()-cpuAtStart).Microseconds())/float64(b.N), "cpu-µs/op")
}

// publishConcurrently fills q with n messages from 64 publishers at a time, so they share commits.
func publishConcurrently(b *testing.B, q *Queue, n int) {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m := msg(fmt.Sprintf("evt-%d", i))
			m.ApplicationProperties = map[string]any{"OrderKey": fmt.Sprintf("opportunity/%d", i)} // distinct records
			if err := q.Publish(context.Background(), m); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// BenchmarkReceive_one_while_128_are_held is the consumer at concurrency 64 with as many
// received ahead: 128 messages stay locked while each freed place receives one message and
// completes it. A receive that steps over the locked messages costs 128 row reads here.
func BenchmarkReceive_one_while_128_are_held(b *testing.B) {
	const held = 128
	q := openTestQueue(b, b.TempDir(), Options{})
	publishConcurrently(b, q, b.N+held)
	locked, err := q.Receive(context.Background(), held)
	if err != nil || len(locked) != held {
		b.Fatalf("hold %d: got %d, %v", held, len(locked), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpuAtStart := processCPU()
	defer func() {
		b.ReportMetric(float64((processCPU()-cpuAtStart).Microseconds())/float64(b.N), "cpu-µs/op")
	}()
	for range b.N {
		got, err := q.Receive(context.Background(), 1)
		if err != nil || len(got) != 1 {
			b.Fatalf("receive: got %d, %v", len(got), err)
		}
		if err := q.Complete(context.Background(), got[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrain_100k_backlog drains a backlog of 100,000 messages the way the consumer does:
// one receive loop asking for as many messages as it has free slots (16), and each message
// completed by its own goroutine. The first and the last tenth of the drain must match, in
// messages/s and in process CPU per message: a receive whose cost grows with the backlog shows
// up as a slow, CPU-hungry first tenth. The CPU figure holds still when a shared disk makes the
// rate (which waits on fsync) jump about.
func BenchmarkDrain_100k_backlog(b *testing.B) {
	const (
		backlog     = 100_000
		concurrency = 16
		tenth       = backlog / 10
	)
	type mark struct {
		at  time.Time
		cpu time.Duration
	}
	now := func() mark { return mark{time.Now(), processCPU()} }
	var firstRate, lastRate, allRate, firstCPU, lastCPU float64
	for range b.N {
		b.StopTimer()
		q := openTestQueue(b, b.TempDir(), Options{})
		seedBacklog(b, q, backlog)
		b.StartTimer()

		var (
			completed atomic.Int64
			marksMu   sync.Mutex
			marks     = map[int64]mark{0: now()}
			wg        sync.WaitGroup
		)
		slots := make(chan struct{}, concurrency)
		for received := 0; received < backlog; {
			slots <- struct{}{}
			want := 1
		fill:
			for want < concurrency {
				select {
				case slots <- struct{}{}:
					want++
				default:
					break fill
				}
			}
			got, err := q.Receive(context.Background(), want)
			if err != nil {
				b.Fatal(err)
			}
			for range want - len(got) {
				<-slots
			}
			received += len(got)
			for _, r := range got {
				wg.Go(func() {
					defer func() { <-slots }()
					if err := q.Complete(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
					if n := completed.Add(1); n == tenth || n == backlog-tenth || n == backlog {
						m := now()
						marksMu.Lock()
						marks[n] = m
						marksMu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		b.StopTimer()
		start, first, lastBegins, end := marks[0], marks[tenth], marks[backlog-tenth], marks[backlog]
		firstRate += tenth / first.at.Sub(start.at).Seconds()
		lastRate += tenth / end.at.Sub(lastBegins.at).Seconds()
		allRate += backlog / end.at.Sub(start.at).Seconds()
		firstCPU += float64((first.cpu - start.cpu).Microseconds()) / tenth
		lastCPU += float64((end.cpu - lastBegins.cpu).Microseconds()) / tenth
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(firstRate/n, "msgs/s-first-tenth")
	b.ReportMetric(lastRate/n, "msgs/s-last-tenth")
	b.ReportMetric(allRate/n, "msgs/s")
	b.ReportMetric(firstCPU/n, "cpu-µs/msg-first-tenth")
	b.ReportMetric(lastCPU/n, "cpu-µs/msg-last-tenth")
}

// seedBacklog writes n due messages in one transaction: the drain is what is measured, and
// publishing them one by one would take longer than draining them.
func seedBacklog(b *testing.B, q *Queue, n int) {
	b.Helper()
	body := []byte(`{"EventId":"00000000-0000-0000-0000-000000000000","EventName":"OpportunityUpdated","RecordId":"3f2c1d9e-5b7a-4c1e-9f0a-2b6d8e4c7a11","ChangedFields":["estimatedvalue","statuscode"]}`)
	now := q.nowNS()
	err := q.inTx(context.Background(), survivesPowerLoss, func(tx *sql.Tx) error {
		stmt, err := tx.Prepare(`INSERT INTO messages
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at)
			VALUES (?, 'corr', 'OpportunityUpdated', '', 'application/json', ?, '{"Attempt":1}', ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range n {
			if _, err := stmt.Exec(fmt.Sprintf("evt-%d", i), body, now, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("seed backlog: %v", err)
	}
}
