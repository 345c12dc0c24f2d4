package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
)

// eventParser accepts any body as one event with a new id.
type eventParser struct{}

func (eventParser) Parse([]byte, event.Hints) (event.Event, error) {
	return event.Event{EventID: fmt.Sprint(time.Now().UnixNano()), EventName: "AccountCreated", Entity: "account"}, nil
}

// fullDisk fails every publish as the embedded queue does on a full disk.
type fullDisk struct{}

func (fullDisk) Publish(context.Context, *queue.Message) error {
	return fmt.Errorf("commit: %w", syscall.ENOSPC)
}

// frozenDisk holds every publish until the test ends, deaf to its context, as a write stuck in
// the kernel on a frozen disk is.
type frozenDisk struct{ thaw chan struct{} }

func (d frozenDisk) Publish(context.Context, *queue.Message) error {
	<-d.thaw
	return nil
}

// intakeAndHealth serves the intake and health the way handler serve wires them, and answers
// the health counts at once, as reads do on a disk that takes no writes.
func intakeAndHealth(t *testing.T, pub queue.Publisher) (intake, health *httptest.Server) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	in := webhook.New(webhook.Config{PublishTimeout: 100 * time.Millisecond}, eventParser{}, pub, log)
	mux := http.NewServeMux()
	admin.NewServer(admin.Config{
		Backend:    "embedded",
		Stats:      func(context.Context) (queue.Stats, error) { return queue.Stats{}, nil },
		Publishing: in.PublishHealth,
	}, log).HealthRoute(mux)
	intake, health = httptest.NewServer(httpintake.Forwarded(in, 0)), httptest.NewServer(mux)
	t.Cleanup(intake.Close)
	t.Cleanup(health.Close)
	return intake, health
}

func postEvent(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// probe asks for health as a probe does: it gives up after 2 s.
func probe(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url + "/api/health")
	if err != nil {
		t.Fatalf("health gave no answer within 2 s: %v", err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	return resp.StatusCode, doc
}

func TestHealth_answers_503_within_2s_while_a_full_disk_fails_every_publish(t *testing.T) {
	intake, health := intakeAndHealth(t, fullDisk{})
	if code, _ := probe(t, health.URL); code != http.StatusOK {
		t.Fatalf("health before any publish: %d", code)
	}
	if code := postEvent(t, intake.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("post on a full disk: %d, want 503", code)
	}
	code, doc := probe(t, health.URL)
	if code != http.StatusServiceUnavailable || doc["type"] != "https://dvrelay.dev/problems/queue-unavailable" {
		t.Errorf("health on a full disk: %d %v, want 503 queue-unavailable", code, doc)
	}
}

func TestHealth_answers_503_within_2s_while_a_frozen_disk_holds_a_publish(t *testing.T) {
	disk := frozenDisk{thaw: make(chan struct{})}
	intake, health := intakeAndHealth(t, disk)
	defer close(disk.thaw)
	if code := postEvent(t, intake.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("post on a frozen disk: %d, want 503", code)
	}
	time.Sleep(webhook.PublishStalledAfter) // the publish the caller gave up on is still held
	if code, doc := probe(t, health.URL); code != http.StatusServiceUnavailable {
		t.Errorf("health on a frozen disk: %d %v, want 503", code, doc)
	}
}
