package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkServe_intake posts distinct native events to a real `handler serve` from 32
// concurrent clients and reports accepted events per second: every 202 means the event was
// committed to the embedded queue's file. The worker runs too (routes log only), as in use.
//
//	go test -run '^$' -bench Serve_intake -benchtime 5000x ./handler
func BenchmarkServe_intake(b *testing.B) {
	addr := freeAddr(b)
	p := startServe(b, b.TempDir(), addr, baseEnv("DVRELAY_LOG_LEVEL=warn"))
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = sampleEvent(b)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next, failed atomic.Int64
	const clients = 32
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(bodies)) {
					return
				}
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
					"http://"+addr+"/api/dataverse/webhook", bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				var a accepted
				_ = json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d posts were not accepted", failed.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if kb, ok := peakRSSKiB(p.cmd.Process.Pid); ok {
		b.ReportMetric(float64(kb)/1024, "peak-RSS-MiB")
	}
}

// peakRSSKiB reads a process's peak resident set size (VmHWM) on Linux.
func peakRSSKiB(pid int) (int, bool) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb, true
			}
		}
	}
	return 0, false
}
