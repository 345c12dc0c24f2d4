package main

// End-to-end tests: the real binary, started as a user starts it, driven over HTTP with a real
// client, stopped with real signals (SIGKILL included). Downstream systems are httptest doubles
// that record the Idempotency-Key of every call, which is how "processed" is observed.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/transport/admin"
	"github.com/google/uuid"
)

// binaryPath is the handler built once for every test in this package. The tests that drive it
// run in parallel: each has its own port, data directory and downstream doubles.
var binaryPath string

// appRoot is where the binary runs, as the Functions host and the README run it: the repository
// root, with routes.json and samples/.
const appRoot = ".."

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dvrelay-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "handler")
	args := []string{"build", "-o", binaryPath}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build handler:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// downstream is a double of the ERP and credit APIs: it records every call by Idempotency-Key.
type downstream struct {
	mu     sync.Mutex
	calls  map[string]int // Idempotency-Key → calls
	delay  time.Duration
	status func(key string) int
	body   string
	srv    *httptest.Server
}

func newDownstream(t testing.TB, body string) *downstream {
	d := &downstream{calls: map[string]int{}, body: body}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		d.mu.Lock()
		delay := d.delay
		d.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		d.mu.Lock()
		status, body := http.StatusOK, d.body
		if d.status != nil {
			status = d.status(key)
		}
		if status == http.StatusOK {
			d.calls[key]++
		}
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *downstream) slowDown(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delay = delay
}

// answer changes what the double answers: status(key) (nil: 200) with body.
func (d *downstream) answer(status func(key string) int, body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status, d.body = status, body
}

func (d *downstream) count(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[key]
}

// process is one running `handler serve`.
type process struct {
	cmd  *exec.Cmd
	addr string
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// baseEnv is a clean environment: the test process's own settings must not leak in.
func baseEnv(extra ...string) []string {
	// The console is off: tests run side by side, and each console would want the default port.
	// The console tests set their own address, which comes later and wins.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "DVRELAY_LOG_LEVEL=debug", "DVRELAY_CONSOLE_ADDR=off"}
	return append(env, extra...)
}

func startServe(t testing.TB, dataDir, addr string, env []string) *process {
	t.Helper()
	return startProcess(t, addr, "/api/health", env, "serve", "--addr", addr, "--data-dir", dataDir)
}

// startProcess starts the binary in the app root with args and env, and waits until GET
// readyPath on addr answers 200 (or, for "/", answers at all, as the Functions host waits).
// The process is killed when the test ends; its output is shown if the test failed.
func startProcess(t testing.TB, addr, readyPath string, env []string, args ...string) *process {
	t.Helper()
	p := &process{addr: addr, out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binaryPath, args...)
	p.cmd.Env = env
	p.cmd.Dir = appRoot
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("handler output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || readyPath == "/" {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("handler %v exited at start: %v\n%s", args, err, p.out.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Fatalf("handler %v did not become ready\n%s", args, p.out.String())
	return nil
}

// signal stops the process with sig and waits for it to exit.
func (p *process) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(60 * time.Second):
		t.Fatalf("handler did not exit after %v", sig)
	}
}

// sampleEvent returns the shipped opportunity sample with a fresh record and operation id, so
// each call is a distinct Dataverse operation with its own EventId.
func sampleEvent(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "samples", "opportunity-update.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct{ PrimaryEntityId, OperationId string }
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	replace := func(b []byte, old string) []byte {
		re := regexp.MustCompile("(?i)" + regexp.QuoteMeta(old))
		return re.ReplaceAll(b, []byte(uuid.NewString()))
	}
	raw = replace(raw, top.PrimaryEntityId)
	return replace(raw, top.OperationId)
}

type accepted struct {
	EventID       string `json:"eventId"`
	CorrelationID string `json:"correlationId"`
	EventName     string `json:"eventName"`
	Duplicate     bool   `json:"duplicate"`
}

func post(ctx context.Context, addr string, body []byte, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/dataverse/webhook", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func mustAccept(t *testing.T, addr string, body []byte) accepted {
	t.Helper()
	resp, b, err := post(context.Background(), addr, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, body %s", resp.StatusCode, b)
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil || a.EventID == "" {
		t.Fatalf("202 body %s: %v", b, err)
	}
	return a
}

func health(t *testing.T, addr string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func flowEnv(credit, erp *downstream, extra ...string) []string {
	return baseEnv(append([]string{
		"DVRELAY_CREDIT_URL=" + credit.srv.URL,
		"DVRELAY_ERP_URL=" + erp.srv.URL,
		"DVRELAY_LOCK_DURATION=5s",
	}, extra...)...)
}

func TestServe_processes_a_posted_event_through_credit_and_erp(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":712}`), newDownstream(t, `{"ok":true}`)
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp))

	a := mustAccept(t, p.addr, sampleEvent(t))
	if a.EventName != "OpportunityUpdated" {
		t.Errorf("eventName = %q, want OpportunityUpdated", a.EventName)
	}
	eventually(t, "the ERP call for "+a.EventID, func() bool { return erp.count(a.EventID) == 1 })
	if credit.count(a.EventID) != 1 {
		t.Errorf("credit calls for %s = %d, want 1", a.EventID, credit.count(a.EventID))
	}
	eventually(t, "an empty queue", func() bool { return health(t, p.addr)["queued"] == float64(0) })
	h := health(t, p.addr)
	if h["backend"] != "embedded" || h["deadLettered"] != float64(0) {
		t.Errorf("health = %v", h)
	}
	if !strings.Contains(p.out.String(), a.EventID) {
		t.Errorf("the log does not mention event %s", a.EventID)
	}
}

func TestServe_processes_duplicate_posts_of_one_event_once(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":1}`), newDownstream(t, `{}`)
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp))

	body := sampleEvent(t)
	first := mustAccept(t, p.addr, body)
	for range 3 {
		if again := mustAccept(t, p.addr, body); again.EventID != first.EventID {
			t.Fatalf("a re-post got EventId %s, want %s", again.EventID, first.EventID)
		}
	}
	eventually(t, "processing", func() bool { return erp.count(first.EventID) >= 1 })
	eventually(t, "an empty queue", func() bool {
		h := health(t, p.addr)
		return h["queued"] == float64(0) && h["scheduled"] == float64(0)
	})
	if n := erp.count(first.EventID); n != 1 {
		t.Errorf("ERP saw event %s %d times, want once", first.EventID, n)
	}
}

// Dataverse retries a post it saw fail, and a post may be answered just before a crash: the
// duplicate window must hold across a kill -9 and a restart (the queue keeps the window's ids
// in its file and indexes them in memory at start).
func TestServe_drops_a_re_post_after_SIGKILL_and_restart(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":1}`), newDownstream(t, `{}`)
	dir, addr := t.TempDir(), freeAddr(t)
	env := flowEnv(credit, erp)
	p := startServe(t, dir, addr, env)
	body := sampleEvent(t)
	first := mustAccept(t, p.addr, body)
	eventually(t, "processing", func() bool { return erp.count(first.EventID) >= 1 })
	p.stop(t, syscall.SIGKILL)

	p = startServe(t, dir, addr, env)
	again := mustAccept(t, p.addr, body)
	if again.EventID != first.EventID || !again.Duplicate {
		t.Errorf("a re-post after kill -9 and restart was answered %+v, want event %s reported as a duplicate", again, first.EventID)
	}
	other := mustAccept(t, p.addr, sampleEvent(t))
	if other.Duplicate {
		t.Errorf("a new event after the restart was reported as a duplicate")
	}
	eventually(t, "the new event processed", func() bool { return erp.count(other.EventID) >= 1 })
	if n := erp.count(first.EventID); n != 1 {
		t.Errorf("ERP saw event %s %d times, want once", first.EventID, n)
	}
}

func TestServe_dead_letters_a_permanently_failing_event_with_its_reason(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, ""), newDownstream(t, `{}`)
	credit.answer(func(string) int { return http.StatusBadRequest }, `{"error":"no such customer"}`)
	dir := t.TempDir()
	p := startServe(t, dir, freeAddr(t), flowEnv(credit, erp))

	a := mustAccept(t, p.addr, sampleEvent(t))
	eventually(t, "a dead letter", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })

	resp, err := http.Get("http://" + p.addr + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		DeadLetters []admin.DeadLetter `json:"deadLetters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.DeadLetters) != 1 {
		t.Fatalf("dead letters = %+v", list.DeadLetters)
	}
	d := list.DeadLetters[0]
	if d.Reason != "PermanentFailure" || !strings.Contains(d.Description, "400") {
		t.Errorf("reason %q, description %q", d.Reason, d.Description)
	}
	if !strings.HasPrefix(d.MessageID, a.EventID) {
		t.Errorf("dead letter message id %q is not event %s", d.MessageID, a.EventID)
	}
	if erp.count(a.EventID) != 0 {
		t.Errorf("the ERP step ran after the credit step failed")
	}

	// The support tool, while serve owns the data dir, asks it over HTTP.
	out, err := exec.Command(binaryPath, "dlq", "list", "--data-dir", dir, "--addr", p.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PermanentFailure") {
		t.Errorf("dlq list: %v\n%s", err, out)
	}

	// Fixed downstream: resubmit and the event goes through.
	credit.answer(nil, `{"score":5}`)
	out, err = exec.Command(binaryPath, "dlq", "resubmit", "--data-dir", dir, "--addr", p.addr,
		fmt.Sprint(d.SequenceNumber)).CombinedOutput()
	if err != nil {
		t.Fatalf("dlq resubmit: %v\n%s", err, out)
	}
	eventually(t, "the resubmitted event at the ERP", func() bool { return erp.count(a.EventID) == 1 })
	if h := health(t, p.addr); h["deadLettered"] != float64(0) {
		t.Errorf("after resubmit health = %v", h)
	}
}

func TestServe_loses_no_accepted_event_across_SIGKILL(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":3}`), newDownstream(t, `{}`)
	erp.slowDown(100 * time.Millisecond) // keep work in flight when the kill lands
	dir, addr := t.TempDir(), freeAddr(t)
	env := flowEnv(credit, erp, "DVRELAY_WORKER_CONCURRENCY=4")
	p := startServe(t, dir, addr, env)

	const events = 120
	var (
		mu     sync.Mutex
		ids    []string
		wg     sync.WaitGroup
		killed = make(chan struct{})
		once   sync.Once
	)
	bodies := make(chan []byte, events)
	for range events {
		bodies <- sampleEvent(t)
	}
	close(bodies)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range bodies {
				resp, b, err := post(context.Background(), addr, body, nil)
				if err != nil || resp.StatusCode != http.StatusAccepted {
					continue // not accepted: Dataverse would retry; not ours to keep
				}
				var a accepted
				if json.Unmarshal(b, &a) == nil {
					mu.Lock()
					ids = append(ids, a.EventID)
					n := len(ids)
					mu.Unlock()
					if n == events/2 {
						once.Do(func() { close(killed) })
					}
				}
			}
		}()
	}
	<-killed
	p.stop(t, syscall.SIGKILL)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(ids) < events/2 {
		t.Fatalf("only %d events accepted before the kill", len(ids))
	}
	processedBeforeRestart := 0
	for _, id := range ids {
		if erp.count(id) > 0 {
			processedBeforeRestart++
		}
	}
	t.Logf("accepted %d, processed before SIGKILL %d", len(ids), processedBeforeRestart)

	p2 := startServe(t, dir, addr, env)
	for _, id := range ids {
		eventually(t, "event "+id+" after restart", func() bool { return erp.count(id) >= 1 })
	}
	eventually(t, "an empty queue", func() bool { return health(t, p2.addr)["queued"] == float64(0) })
}

func TestServe_drains_in_flight_work_on_SIGTERM(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":3}`), newDownstream(t, `{}`)
	erp.slowDown(300 * time.Millisecond)
	dir, addr := t.TempDir(), freeAddr(t)
	p := startServe(t, dir, addr, flowEnv(credit, erp))

	a := mustAccept(t, addr, sampleEvent(t))
	eventually(t, "the credit call", func() bool { return credit.count(a.EventID) == 1 })
	p.stop(t, syscall.SIGTERM)
	if p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit code %d after SIGTERM\n%s", p.cmd.ProcessState.ExitCode(), p.out.String())
	}
	if erp.count(a.EventID) != 1 {
		t.Errorf("in-flight event %s did not finish before exit", a.EventID)
	}
}

func TestServe_refuses_a_second_process_on_the_same_data_dir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startServe(t, dir, freeAddr(t), baseEnv())
	cmd := exec.Command(binaryPath, "serve", "--addr", freeAddr(t), "--data-dir", dir)
	cmd.Env = baseEnv()
	cmd.Dir = appRoot
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("second serve: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in use") {
		t.Errorf("second serve said:\n%s", out)
	}
}

func TestServe_refuses_a_public_address_without_a_webhook_secret(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binaryPath, "serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir())
	cmd.Env = baseEnv()
	cmd.Dir = appRoot
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "DVRELAY_WEBHOOK_SECRET must be set") {
		t.Errorf("exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func TestServe_answers_bad_input_with_problems_and_keeps_what_it_accepted(t *testing.T) {
	t.Parallel()
	credit, erp := newDownstream(t, `{"score":3}`), newDownstream(t, `{}`)
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp, "DVRELAY_WEBHOOK_SECRET=s3cret,n3xt"))
	good := sampleEvent(t)
	auth := http.Header{"X-Dvrelay-Secret": {"n3xt"}}
	cases := []struct {
		name   string
		body   []byte
		header http.Header
		status int
	}{
		{"missing secret", good, nil, http.StatusUnauthorized},
		{"wrong secret", good, http.Header{"X-Dvrelay-Secret": {"nope"}}, http.StatusUnauthorized},
		{"not json", []byte("hello"), auth, http.StatusBadRequest},
		{"schema violation", []byte(`{"MessageName":"Update","PrimaryEntityName":"Opportunity!","PrimaryEntityId":"x"}`), auth, http.StatusBadRequest},
		{"too large", bytes.Repeat([]byte(" "), 2<<20), auth, http.StatusRequestEntityTooLarge},
		{"not json media type", good, http.Header{"X-Dvrelay-Secret": {"s3cret"}, "Content-Type": {"text/plain"}}, http.StatusUnsupportedMediaType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, b, err := post(context.Background(), p.addr, c.body, c.header)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("content type %q", ct)
			}
			var prob map[string]any
			if err := json.Unmarshal(b, &prob); err != nil || prob["type"] == nil || prob["status"] != float64(c.status) {
				t.Errorf("problem %s (%v)", b, err)
			}
		})
	}
	resp, b, err := post(context.Background(), p.addr, good, auth)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the good event after the bad ones: %v %s", err, b)
	}
	var a accepted
	_ = json.Unmarshal(b, &a)
	eventually(t, "processing", func() bool { return erp.count(a.EventID) == 1 })
}
