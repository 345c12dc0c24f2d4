package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// mapEnv is a process environment for run: only the settings a test names are set.
func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// watchedLog is run's stdout; it closes listening when the process logs that it listens.
type watchedLog struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan struct{}
	once      sync.Once
}

func (w *watchedLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), `"msg":"listening"`) {
		w.once.Do(func() { close(w.listening) })
	}
	return n, err
}

func (w *watchedLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestServe_refuses_a_public_address_when_the_webhook_secret_parses_to_no_secret(t *testing.T) {
	for _, secret := range []string{", ", ",", "   "} {
		t.Run(secret, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stdout := &watchedLog{listening: make(chan struct{})}
			var stderr bytes.Buffer
			env := mapEnv(map[string]string{
				"DVRELAY_WEBHOOK_SECRET": secret,
				"DVRELAY_ROUTES":         filepath.Join(appRoot, "routes.json"),
			})
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, env, stdout, &stderr)
			}()
			var code int
			select {
			case code = <-done:
			case <-stdout.listening:
				cancel()
				<-done
				t.Fatalf("serve listened on a public address with no authentication\n%s", stdout.String())
			}
			if code == 0 {
				t.Fatalf("exit 0\n%s%s", stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), "DVRELAY_WEBHOOK_SECRET") {
				t.Errorf("exit %d without naming DVRELAY_WEBHOOK_SECRET:\n%s", code, stderr.String())
			}
		})
	}
}

func TestServe_on_a_port_in_use_hints_at_addr_and_creates_no_data_dir(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir := filepath.Join(t.TempDir(), "demo")
	var stdout, stderr bytes.Buffer
	env := mapEnv(map[string]string{"DVRELAY_ROUTES": filepath.Join(appRoot, "routes.json")})

	code := run(context.Background(), []string{"serve", "--addr", taken.Addr().String(), "--data-dir", dataDir}, env, &stdout, &stderr)

	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{taken.Addr().String(), "--addr", "--url"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data dir was created for a serve that never started: %v", err)
	}
}
