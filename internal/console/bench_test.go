package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/console"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
)

// Sizes of the benchmark's queue: a busy week of one installation.
const (
	benchEvents      = 100_000 // events with history: accepted, then completed or dead-lettered
	benchDeadLetters = 10_000  // every tenth event
	benchRecords     = 20_000  // five events per record
)

// seedQueue fills dir through the queue's own API, as the intake and the worker would:
// benchEvents published, each received and settled, every tenth dead-lettered by the ERP.
func seedQueue(b *testing.B, dir string) {
	ctx := context.Background()
	q, err := local.Open(ctx, dir, local.Options{HistoryMaxEntries: 3 * benchEvents}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= benchEvents {
					return
				}
				rec := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i%benchRecords)
				m := &queue.Message{MessageID: fmt.Sprintf("ev-%06d", i), CorrelationID: fmt.Sprintf("corr-%06d", i), Subject: "Update",
					Body:                  []byte(fmt.Sprintf(`{"EventName":"Update","Entity":"opportunity","RecordId":%q,"Attributes":{"name":"Contoso %d","estimatedvalue":12500}}`, rec, i)),
					ApplicationProperties: map[string]any{queue.PropEntity: "opportunity", queue.PropEventName: "Update"}}
				if err := q.Publish(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var settled atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for settled.Load() < benchEvents {
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				got, err := q.Receive(rctx, 64)
				cancel()
				if err != nil {
					continue
				}
				for _, r := range got {
					out := queue.Outcome{Kind: queue.Complete, Summary: "complete: 4 steps"}
					var n int
					fmt.Sscanf(r.MessageID, "ev-%d", &n)
					if n%10 == 0 {
						out = queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: "erp-sync",
							Description: `route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request: {"message":"customer account is blocked"}`}
					}
					if err := q.Settle(ctx, queue.DeliveryOf(r), out); err != nil {
						b.Error(err)
					}
					settled.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

var seedOnce sync.Once

// benchDir is the seeded queue, made once per run and copied for each benchmark that writes.
func benchDir(b *testing.B) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("dvrelay-console-bench-%d", benchEvents))
	seedOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return
		}
		_ = os.RemoveAll(dir)
		start := time.Now()
		seedQueue(b, dir)
		b.Logf("seeded %d events (%d dead letters) in %s", benchEvents, benchDeadLetters, time.Since(start).Round(time.Second))
		_ = os.WriteFile(filepath.Join(dir, "ready"), nil, 0o600)
	})
	return dir
}

type benchConsole struct {
	srv    *httptest.Server
	client *http.Client
	q      *local.Queue
}

func openBenchConsole(b *testing.B) *benchConsole {
	q, err := local.Open(context.Background(), benchDir(b), local.Options{HistoryMaxEntries: 3 * benchEvents}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = q.Close() })
	c, err := console.New(console.Config{
		Support: &support.Service{Source: support.Backend{Q: q, ReadOnly: true}, History: q, Grouper: q, Stats: q.Stats},
		Auth:    httpauth.New("x-dvrelay-secret", []byte(secret)), Backend: "embedded",
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	b.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	bc := &benchConsole{srv: srv, client: &http.Client{Jar: jar}, q: q}
	resp, err := bc.client.Get(srv.URL + "/console/signin")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindStringSubmatch(string(page))
	resp, err = bc.client.PostForm(srv.URL+"/console/signin", url.Values{"csrf": {m[1]}, "secret": {secret}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	return bc
}

func (bc *benchConsole) get(b *testing.B, path string) {
	resp, err := bc.client.Get(bc.srv.URL + path)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path == "/console/signin" {
		b.Fatalf("%s: %s at %s", path, resp.Status, resp.Request.URL)
	}
}

// The pages, each answered with 100,000 events of history and 10,000 dead letters.
var benchPages = []struct{ name, path string }{
	{"overview", "/console/"},
	{"deadletters", "/console/deadletters"},
	{"deadletters_filtered", "/console/deadletters?reason=PermanentFailure&entity=opportunity&since=7d"},
	{"event", "/console/event?id=ev-050000"},
	{"record", "/console/record?q=0000c350-0000-4000-8000-000000000000"},
	{"preview_one", "/console/deadletters/preview?action=resubmit&seq=5000"},
}

func BenchmarkConsole_page(b *testing.B) {
	bc := openBenchConsole(b)
	for _, p := range benchPages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				bc.get(b, p.path)
			}
		})
	}
}

// BenchmarkConsole_intake_publish prices what an open console costs the intake: publishes to the
// same queue with no console, with one reloading a page every second (a person refreshing), and
// with one reloading its pages back to back (the worst a console can do).
func BenchmarkConsole_intake_publish(b *testing.B) {
	bc := openBenchConsole(b)
	for _, mode := range []string{"console_closed", "console_refreshing_every_second", "console_reloading_back_to_back"} {
		b.Run(mode, func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var pages atomic.Int64
			if mode != "console_closed" {
				pause := time.Duration(0)
				if mode == "console_refreshing_every_second" {
					pause = time.Second
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						bc.get(b, benchPages[i%len(benchPages)].path)
						pages.Add(1)
						if pause > 0 {
							select {
							case <-stop:
								return
							case <-time.After(pause):
							}
						}
					}
				}()
			}
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					m := &queue.Message{MessageID: fmt.Sprintf("%s-%d-%d", mode, time.Now().UnixNano(), i), Subject: "Update",
						Body: []byte(`{"EventName":"Update","Entity":"opportunity","RecordId":"r"}`)}
					if err := bc.q.Publish(context.Background(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(pages.Load())/b.Elapsed().Seconds(), "pages/s")
		})
	}
}
