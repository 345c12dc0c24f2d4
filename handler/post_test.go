package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var pluginSample = filepath.Join(appRoot, "samples", "plugin-event.json")

func TestPost_names_the_address_it_tried_and_the_flag_to_change_it_when_nothing_listens(t *testing.T) {
	url := "http://" + freeAddr(t) + "/api/dataverse/webhook"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"post", "--url", url, pluginSample}, mapEnv(nil), &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	msg := stderr.String()
	for _, want := range []string{url, "--url", "handler serve"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not mention %q:\n%s", want, msg)
		}
	}
}

func TestPost_without_url_names_the_default_address(t *testing.T) {
	// The default is where serve listens by default; a user who moved serve must learn both.
	var stderr bytes.Buffer
	fs, code, ok := parsePost(nil, &stderr)
	if !ok {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if fs.url != defaultIntakeURL || !strings.HasPrefix(defaultIntakeURL, "http://127.0.0.1:7071/") {
		t.Errorf("default url %q", fs.url)
	}
}

// recorder is an intake double that keeps the headers of every request.
type recorder struct {
	mu      sync.Mutex
	headers []http.Header
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"eventId":"e1"}`))
}

func TestPost_sends_every_header_given_with_H_wherever_it_is_on_the_line(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	args := []string{"post", "-H", "x-ms-dynamics-msg-size-exceeded: true", "--url", srv.URL, pluginSample,
		"-H", "X-Ms-Correlation-Request-Id:  c0ffee00-0000-4000-8000-000000000001 ", pluginSample}
	env := mapEnv(map[string]string{"DVRELAY_WEBHOOK_SECRET": "s3cret"})
	if code := run(context.Background(), args, env, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if len(rec.headers) != 2 {
		t.Fatalf("the intake got %d requests, want 2 (one per file)", len(rec.headers))
	}
	for _, h := range rec.headers {
		if h.Get("X-Ms-Dynamics-Msg-Size-Exceeded") != "true" ||
			h.Get("X-Ms-Correlation-Request-Id") != "c0ffee00-0000-4000-8000-000000000001" ||
			h.Get("X-Dvrelay-Secret") != "s3cret" {
			t.Errorf("headers sent: %v", h)
		}
	}
	if got := strings.Count(stdout.String(), "202"); got != 2 {
		t.Errorf("stdout:\n%s", stdout.String())
	}
}

func TestPost_refuses_a_header_that_is_not_name_colon_value(t *testing.T) {
	for _, bad := range []string{"no-colon", ": value", "bad name: v"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"post", "-H", bad, pluginSample}, mapEnv(nil), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "'Name: value'") {
			t.Errorf("-H %q: exit %d\n%s", bad, code, stderr.String())
		}
	}
}

func TestPost_says_duplicate_when_the_queue_already_held_the_event(t *testing.T) {
	s := startInProcessServe(t, t.TempDir(), freeAddr(t), mapEnv(map[string]string{
		"DVRELAY_ROUTES": filepath.Join(appRoot, "routes.json"),
	}))
	url := "http://" + s.addr + "/api/dataverse/webhook"
	post := func() string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"post", "--url", url, pluginSample}, mapEnv(nil), &stdout, &stderr); code != 0 {
			t.Fatalf("post exit %d: %s%s", code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	if first := post(); strings.Contains(first, "duplicate") {
		t.Errorf("the first post is reported as a duplicate:\n%s", first)
	}
	if second := post(); !strings.Contains(second, "duplicate: the queue already held this event") {
		t.Errorf("the second post of the same event does not say it was a duplicate:\n%s", second)
	}
}

func TestPost_on_a_401_says_which_secret_to_use(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"title":"Unauthorized","status":401}`))
	}))
	defer srv.Close()
	for env, sent := range map[string]string{"": "sent no secret", "a-wrong-secret": "sent the first DVRELAY_WEBHOOK_SECRET in x-dvrelay-secret"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"post", "--url", srv.URL, pluginSample, pluginSample},
			mapEnv(map[string]string{"DVRELAY_WEBHOOK_SECRET": env}), &stdout, &stderr)
		if code != 1 {
			t.Errorf("secret %q: exit %d, want 1", env, code)
		}
		for _, want := range []string{"401", sent, "DVRELAY_WEBHOOK_SECRET", "that handler serve was started with"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("secret %q: stderr lacks %q:\n%s", env, want, stderr.String())
			}
		}
		if strings.Contains(stderr.String(), "a-wrong-secret") {
			t.Errorf("stderr shows the secret:\n%s", stderr.String())
		}
		if n := strings.Count(stderr.String(), "refused the secret"); n != 1 {
			t.Errorf("secret %q: said %d times, want once for both files", env, n)
		}
	}
}
