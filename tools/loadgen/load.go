package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
)

type loadFlags struct {
	label, url, bodyFile, secret, secretHeader, out string
	clients, requests                               int
	rate                                            float64
	duration, warmup, timeout, window, sample       time.Duration
	pid, maxOutstanding                             int
}

// outcome is one request as the client saw it. at is when it ended, from the start of the run.
type outcome struct {
	at      time.Duration
	latency time.Duration
	status  int    // 0: no answer (connection error or timeout)
	kind    string // why there was no answer, or the problem type's last segment of a 503
}

func parseLoad(mode string, args []string, stderr io.Writer) (loadFlags, error) {
	var f loadFlags
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.label, "label", mode, "name of this run in the results")
	fs.StringVar(&f.url, "url", "http://127.0.0.1:7071/api/dataverse/webhook", "intake URL")
	fs.StringVar(&f.bodyFile, "body", "samples/opportunity-update.json", "event template; its record and operation ids are replaced on every post")
	fs.StringVar(&f.secret, "secret", "", "webhook secret to send")
	fs.StringVar(&f.secretHeader, "secret-header", config.DefaultSecretHeader, "header the secret goes in")
	fs.StringVar(&f.out, "out", "", "write the result as JSON to this file (default: stdout)")
	fs.DurationVar(&f.duration, "d", 20*time.Second, "how long to post, warm-up included")
	fs.DurationVar(&f.warmup, "warmup", 3*time.Second, "first part of the run left out of the figures")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "client timeout of one post")
	fs.DurationVar(&f.window, "window", 10*time.Second, "width of the accepted/s windows reported (shows a decline)")
	fs.DurationVar(&f.sample, "sample", 10*time.Second, "how often to sample the server's RSS into the result")
	fs.IntVar(&f.pid, "pid", 0, "server process to read CPU and RSS of (/proc/<pid>)")
	if mode == "closed" {
		fs.IntVar(&f.clients, "c", 32, "concurrent clients, each waiting for its answer before posting again")
		fs.IntVar(&f.requests, "n", 0, "stop after this many posts instead of after -d (no warm-up)")
	} else {
		fs.Float64Var(&f.rate, "rate", 1000, "posts per second")
		fs.IntVar(&f.maxOutstanding, "max-outstanding", 20000, "posts waiting for an answer before the generator skips (counted)")
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.requests > 0 {
		f.warmup = 0
	}
	if mode == "open" && f.rate <= 0 {
		return f, errors.New("-rate must be positive")
	}
	return f, nil
}

func runLoad(mode string, args []string, stdout, stderr io.Writer) error {
	f, err := parseLoad(mode, args, stderr)
	if err != nil {
		return err
	}
	gen, err := loadBodies(f.bodyFile)
	if err != nil {
		return err
	}
	conns := f.clients
	if mode == "open" {
		conns = 1024
	}
	client := &http.Client{
		Timeout: f.timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: f.timeout}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
		},
	}
	l := &load{f: f, gen: gen, client: client}
	res, err := l.run(mode)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s: %.0f accepted/s, p50 %.1f ms, p99 %.1f ms, 503s %d (p99 %.1f ms), other %v\n",
		res.Label, res.AcceptedPerSec, res.Accepted.P50, res.Accepted.P99, res.Overloaded, res.Refused.P99, res.OtherStatus)
	return writeResult(res, f.out, stdout)
}

// writeResult writes a run's result as indented JSON to the file out, or to stdout when out is
// empty: what loadgen table reads back.
func writeResult(res any, out string, stdout io.Writer) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return writeFile(out, b)
}

type load struct {
	f      loadFlags
	gen    *bodies
	client *http.Client

	start    time.Time
	mu       sync.Mutex
	outcomes []outcome
	skipped  atomic.Int64
}

// post sends one event and records what came back; latency is counted from when it was sent.
func (l *load) post(ctx context.Context) {
	body := l.gen.next()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.f.url, bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL was parsed once already; this cannot fail
	}
	req.Header.Set("Content-Type", "application/json")
	if l.f.secret != "" {
		req.Header.Set(l.f.secretHeader, l.f.secret)
	}
	sent := time.Now()
	o := outcome{}
	resp, err := l.client.Do(req)
	if err == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.status = resp.StatusCode
		if o.status == http.StatusServiceUnavailable {
			o.kind = problemKind(b)
		}
	} else {
		o.kind = errorKind(err)
	}
	done := time.Now()
	o.at, o.latency = done.Sub(l.start), done.Sub(sent)
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
}

func (l *load) run(mode string) (*result, error) {
	if _, err := http.NewRequest(http.MethodPost, l.f.url, nil); err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	ctx := context.Background()
	l.start = time.Now()
	selfAtStart, _ := cpuSeconds(os.Getpid())
	end := l.start.Add(l.f.duration)
	probe := newProbe(l.f.pid, l.f.sample)
	defer probe.stop()
	var cpuAtWarmup, writtenAtWarmup atomic.Uint64 // math.Float64bits
	warmupDone := time.AfterFunc(l.f.warmup, func() {
		cpuAtWarmup.Store(math.Float64bits(probe.cpu()))
		writtenAtWarmup.Store(math.Float64bits(probe.written()))
	})

	var wg sync.WaitGroup
	if mode == "closed" {
		var sent atomic.Int64
		for range l.f.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if l.f.requests > 0 {
						if sent.Add(1) > int64(l.f.requests) {
							return
						}
					} else if time.Now().After(end) {
						return
					}
					l.post(ctx)
				}
			}()
		}
	} else {
		// Each post is due at start + i/rate and goes out then, whether or not earlier ones were
		// answered: an overloaded server is not allowed to slow the arrivals down.
		interval := time.Duration(float64(time.Second) / l.f.rate)
		outstanding := make(chan struct{}, l.f.maxOutstanding)
		for i := 0; ; i++ {
			due := l.start.Add(time.Duration(i) * interval)
			if due.After(end) {
				break
			}
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			select {
			case outstanding <- struct{}{}:
			default:
				l.skipped.Add(1)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-outstanding }()
				l.post(ctx)
			}()
		}
	}
	wg.Wait()
	warmupDone.Stop()
	elapsed := time.Since(l.start)
	cpuAtEnd, writtenAtEnd := probe.cpu(), probe.written()
	selfAtEnd, _ := cpuSeconds(os.Getpid())

	l.mu.Lock()
	defer l.mu.Unlock()
	res := summarize(l.f, mode, l.outcomes, elapsed)
	res.GeneratorSkipped = l.skipped.Load()
	if n := len(l.outcomes); n > 0 && selfAtEnd > selfAtStart {
		res.GeneratorCPUMsPerPost = (selfAtEnd - selfAtStart) * 1000 / float64(n)
	}
	if l.f.pid > 0 {
		if from := math.Float64frombits(cpuAtWarmup.Load()); res.Accepted.Count > 0 && cpuAtEnd > from {
			res.ServerCPUMsPerAccepted = (cpuAtEnd - from) * 1000 / float64(res.Accepted.Count)
		}
		if from := math.Float64frombits(writtenAtWarmup.Load()); res.Accepted.Count > 0 && writtenAtEnd > from {
			res.ServerKBWrittenPerAccepted = (writtenAtEnd - from) / 1024 / float64(res.Accepted.Count)
		}
		res.RSS = probe.rss()
	}
	return res, nil
}

// result is one run, as written to the results directory.
type result struct {
	Label          string         `json:"label"`
	Mode           string         `json:"mode"`
	URL            string         `json:"url"`
	Clients        int            `json:"clients,omitempty"`
	Rate           float64        `json:"rate,omitempty"`
	Seconds        float64        `json:"seconds"` // measured, warm-up excluded
	WarmupSeconds  float64        `json:"warmupSeconds"`
	Sent           int            `json:"sent"`
	AcceptedPerSec float64        `json:"acceptedPerSec"`
	Accepted       latencies      `json:"accepted"`   // 2xx
	Overloaded     int            `json:"overloaded"` // 503 turned away by admission control
	Refused        latencies      `json:"refused"`    // their latencies
	OtherStatus    map[string]int `json:"otherStatus,omitempty"`
	// Windows is accepted/s in successive windows of -window, warm-up included: a decline
	// over the run shows here.
	Windows                []float64 `json:"windows"`
	GeneratorSkipped       int64     `json:"generatorSkipped,omitempty"`
	ServerCPUMsPerAccepted float64   `json:"serverCpuMsPerAccepted,omitempty"`
	// ServerKBWrittenPerAccepted is what the server wrote to storage per accepted event: the
	// queue's log, the checkpoints into its file, the reference servers' appends.
	ServerKBWrittenPerAccepted float64 `json:"serverKBWrittenPerAccepted,omitempty"`
	// GeneratorCPUMsPerPost is this generator's own CPU per post sent: on a small machine it
	// competes with the server, and this says how much.
	GeneratorCPUMsPerPost float64   `json:"generatorCpuMsPerPost,omitempty"`
	RSS                   *rssTrace `json:"rss,omitempty"`
}

type latencies struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

func summarize(f loadFlags, mode string, all []outcome, elapsed time.Duration) *result {
	res := &result{Label: f.label, Mode: mode, URL: f.url, Clients: f.clients, Rate: f.rate, OtherStatus: map[string]int{}}
	// The rate is over the time posts were sent: in an open loop the answers to the last ones
	// may come in long after.
	measured := f.duration - f.warmup
	if f.requests > 0 {
		measured = elapsed
	}
	res.Seconds, res.WarmupSeconds = measured.Seconds(), f.warmup.Seconds()
	var ok, refused []time.Duration
	nWindows := int(elapsed/f.window) + 1
	perWindow := make([]int, nWindows)
	for _, o := range all {
		accepted := o.status >= 200 && o.status < 300
		if accepted {
			perWindow[int(o.at/f.window)]++
		}
		if o.at < f.warmup {
			continue
		}
		res.Sent++
		switch {
		case accepted:
			ok = append(ok, o.latency)
		case o.status == http.StatusServiceUnavailable && o.kind == "overloaded":
			refused = append(refused, o.latency)
		case o.status == http.StatusServiceUnavailable:
			res.OtherStatus["503 "+o.kind]++
		case o.status == 0:
			res.OtherStatus["no answer ("+o.kind+")"]++
		default:
			res.OtherStatus[fmt.Sprint(o.status)]++
		}
	}
	res.Accepted = percentiles(ok)
	res.Refused = percentiles(refused)
	res.Overloaded = len(refused)
	if res.Seconds > 0 {
		res.AcceptedPerSec = float64(len(ok)) / res.Seconds
	}
	for i, n := range perWindow {
		width := f.window
		if rest := elapsed - time.Duration(i)*f.window; rest < width {
			width = rest
		}
		if width >= f.window/2 { // a short last window says little
			res.Windows = append(res.Windows, float64(n)/width.Seconds())
		}
	}
	return res
}

func percentiles(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i].Microseconds()) / 1000
	}
	return latencies{Count: len(ds), P50: at(0.50), P99: at(0.99), Max: at(1)}
}

// probe samples a server process's RSS while the run goes on.
type probe struct {
	pid     int
	done    chan struct{}
	stopped sync.Once
	mu      sync.Mutex
	trace   rssTrace
}

type rssTrace struct {
	StartMiB float64   `json:"startMiB"`
	PeakMiB  float64   `json:"peakMiB"`
	EndMiB   float64   `json:"endMiB"`
	Samples  []float64 `json:"samplesMiB"` // one per -sample
}

func newProbe(pid int, every time.Duration) *probe {
	p := &probe{pid: pid, done: make(chan struct{})}
	if pid <= 0 {
		return p
	}
	first, _ := rssMiB(pid)
	p.trace = rssTrace{StartMiB: first, PeakMiB: first, Samples: []float64{first}}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-p.done:
				return
			case now := <-tick.C:
				v, err := rssMiB(pid)
				if err != nil {
					continue
				}
				p.mu.Lock()
				p.trace.PeakMiB = max(p.trace.PeakMiB, v)
				p.trace.EndMiB = v
				if now.Sub(last) >= every {
					p.trace.Samples = append(p.trace.Samples, v)
					last = now
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *probe) cpu() float64 {
	if p.pid <= 0 {
		return 0
	}
	s, _ := cpuSeconds(p.pid)
	return s
}

func (p *probe) written() float64 {
	if p.pid <= 0 {
		return 0
	}
	b, _ := writeBytes(p.pid)
	return b
}

func (p *probe) rss() *rssTrace {
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.trace
	if v, err := rssMiB(p.pid); err == nil {
		t.EndMiB = v
		t.PeakMiB = max(t.PeakMiB, v)
	}
	return &t
}

func (p *probe) stop() { p.stopped.Do(func() { close(p.done) }) }

// problemKind is the last segment of a problem+json type ("overloaded", "unavailable"), or
// "other" for a body that is not one.
func problemKind(body []byte) string {
	var p struct{ Type string }
	if json.Unmarshal(body, &p) != nil || p.Type == "" {
		return "other"
	}
	return p.Type[strings.LastIndexByte(p.Type, '/')+1:]
}

// errorKind names a client error briefly, for the result's counts.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	default:
		return "error"
	}
}
