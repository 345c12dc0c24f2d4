package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
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
		Label: *label, Mode: "drain", Events: s.Distinct, Concurrency: *conc,
		LatencyMs: float64(latency.Microseconds()) / 1000, CallsPer: *calls,
		EventsPerSec: float64(s.Distinct) / took,
		IdealPerSec:  float64(*conc) / latency.Seconds() / float64(*calls),
	}
	fmt.Fprintf(stderr, "%s: %.0f events/s, ideal %.0f (%.0f%%)\n", res.Label, res.EventsPerSec, res.IdealPerSec, 100*res.EventsPerSec/res.IdealPerSec)
	b, _ := json.MarshalIndent(res, "", "  ")
	if *out == "" {
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	return writeFile(*out, append(b, '\n'))
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
