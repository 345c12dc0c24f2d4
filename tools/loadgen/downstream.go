package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// downstream is the system the worker calls in the worker benchmark: it answers every POST after
// a fixed latency and counts the distinct Idempotency-Keys (EventIds) it has seen. With -hold it
// first holds every call until POST /release, so a backlog can be queued before the clock starts.
type downstream struct {
	latency time.Duration

	mu         sync.Mutex
	released   chan struct{}
	releasedAt time.Time
	seen       map[string]bool
	calls      int
	lastNewAt  time.Time
}

// downstreamStats is GET /stats.
type downstreamStats struct {
	Calls      int       `json:"calls"`
	Distinct   int       `json:"distinct"`
	ReleasedAt time.Time `json:"releasedAt"`
	LastNewAt  time.Time `json:"lastNewAt"`
}

func runDownstream(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("downstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7090", "address to listen on")
	latency := fs.Duration("latency", 50*time.Millisecond, "how long each call takes")
	hold := fs.Bool("hold", false, "hold every call until POST /release")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := &downstream{latency: *latency, released: make(chan struct{}), seen: map[string]bool{}}
	if !*hold {
		d.release()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, _ *http.Request) { d.release() })
	mux.HandleFunc("GET /stats", d.stats)
	mux.HandleFunc("/", d.call)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(stderr, "", 0)}
	fmt.Fprintf(stderr, "downstream on %s, %s per call, hold %v\n", *addr, *latency, *hold)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (d *downstream) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.released:
	default:
		d.releasedAt = time.Now()
		close(d.released)
	}
}

func (d *downstream) call(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-d.released:
	case <-r.Context().Done():
		return
	}
	select {
	case <-time.After(d.latency):
	case <-r.Context().Done():
		return
	}
	key := r.Header.Get("Idempotency-Key")
	d.mu.Lock()
	d.calls++
	if key != "" && !d.seen[key] {
		d.seen[key] = true
		d.lastNewAt = time.Now()
	}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true,"score":1}`)
}

func (d *downstream) stats(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	s := downstreamStats{Calls: d.calls, Distinct: len(d.seen), ReleasedAt: d.releasedAt, LastNewAt: d.lastNewAt}
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

// The modes of a drainResult: the worker's drain, and the bare client's calls beside it.
const (
	modeDrain = "drain"
	modeCalls = "calls"
)

// drainResult is the worker benchmark's result: how fast the worker emptied a queued backlog
// through the downstream, beside the most any worker could do with that concurrency.
type drainResult struct {
	Label        string  `json:"label"`
	Mode         string  `json:"mode"`
	Events       int     `json:"events"`
	Concurrency  int     `json:"concurrency"`
	LatencyMs    float64 `json:"latencyMs"`
	CallsPer     int     `json:"callsPerEvent"`
	EventsPerSec float64 `json:"eventsPerSec"`
	IdealPerSec  float64 `json:"idealPerSec"`
}

func runDrain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	label := fs.String("label", "worker", "name of this run in the results")
	base := fs.String("downstream", "http://127.0.0.1:7090", "the holding downstream")
	events := fs.Int("events", 0, "events queued, all of which must reach the downstream")
	conc := fs.Int("concurrency", 16, "the worker's DVRELAY_WORKER_CONCURRENCY, for the ideal")
	latency := fs.Duration("latency", 50*time.Millisecond, "the downstream's latency, for the ideal")
	calls := fs.Int("calls", 1, "downstream calls per event, for the ideal")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	out := fs.String("out", "", "write the result as JSON to this file (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *events <= 0 {
		return errors.New("-events must be positive")
	}
	resp, err := http.Post(*base+"/release", "text/plain", nil)
	if err != nil {
		return fmt.Errorf("release the downstream: %w", err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(*timeout)
	var s downstreamStats
	for {
		s, err = readStats(*base)
		if err != nil {
			return err
		}
		if s.Distinct >= *events {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events reached the downstream within %s", s.Distinct, *events, *timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := s.LastNewAt.Sub(s.ReleasedAt).Seconds()
	res := drainResult{
		Label: *label, Mode: modeDrain, Events: s.Distinct, Concurrency: *conc,
		LatencyMs: float64(latency.Microseconds()) / 1000, CallsPer: *calls,
		EventsPerSec: float64(s.Distinct) / took,
		IdealPerSec:  float64(*conc) / latency.Seconds() / float64(*calls),
	}
	fmt.Fprintf(stderr, "%s: %.0f events/s, ideal %.0f (%.0f%%)\n", res.Label, res.EventsPerSec, res.IdealPerSec, 100*res.EventsPerSec/res.IdealPerSec)
	return writeResult(res, *out, stdout)
}

func readStats(base string) (downstreamStats, error) {
	var s downstreamStats
	resp, err := http.Get(base + "/stats")
	if err != nil {
		return s, fmt.Errorf("downstream stats: %w", err)
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// runCalls is the worker benchmark's reference: a bare HTTP client that posts n event-sized
// bodies straight to the downstream, c at a time, each again as soon as the last is answered.
// What it reaches is the most any worker of that concurrency can get from this downstream on
// this machine (the downstream's own delay past its latency, the loopback, the scheduler), so the
// worker's drain is reported beside it as well as beside the ideal.
func runCalls(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("calls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	label := fs.String("label", "bare", "name of this run in the results")
	url := fs.String("url", "http://127.0.0.1:7090/call", "the downstream's call URL (released, not holding)")
	n := fs.Int("n", 0, "calls to make")
	conc := fs.Int("c", 16, "calls at once (the worker's concurrency)")
	latency := fs.Duration("latency", 50*time.Millisecond, "the downstream's latency, for the ideal")
	bodyPath := fs.String("body", "samples/opportunity-update.json", "a file whose bytes are each call's body")
	out := fs.String("out", "", "write the result as JSON to this file (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *conc <= 0 {
		return errors.New("-n and -c must be positive")
	}
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc}}
	var next atomic.Int64
	errs := make(chan error, *conc)
	start := time.Now()
	for range *conc {
		go func() {
			for i := next.Add(1); i <= int64(*n); i = next.Add(1) {
				if err := call(client, *url, body, fmt.Sprintf("%s-%d", *label, i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range *conc {
		if e := <-errs; e != nil && err == nil {
			err = e
			next.Store(int64(*n)) // the others stop after their call under way
		}
	}
	if err != nil {
		return err
	}
	took := time.Since(start).Seconds()
	res := drainResult{
		Label: *label, Mode: modeCalls, Events: *n, Concurrency: *conc,
		LatencyMs: float64(latency.Microseconds()) / 1000, CallsPer: 1,
		EventsPerSec: float64(*n) / took,
		IdealPerSec:  float64(*conc) / latency.Seconds(),
	}
	fmt.Fprintf(stderr, "%s: %.0f calls/s, ideal %.0f (%.0f%%)\n", res.Label, res.EventsPerSec, res.IdealPerSec, 100*res.EventsPerSec/res.IdealPerSec)
	return writeResult(res, *out, stdout)
}

// call posts body to url once and reads the answer to its end, so the connection is reused.
func call(client *http.Client, url string, body []byte, key string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}
