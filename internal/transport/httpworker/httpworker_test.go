package httpworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/httpworker"
)

// fakeWorker answers with outcome, and its settlement fails with err.
type fakeWorker struct {
	got     queue.Delivery
	outcome queue.Outcome
	err     error
}

func (f *fakeWorker) Process(_ context.Context, d queue.Delivery) queue.Outcome {
	f.got = d
	return f.outcome
}

func (f *fakeWorker) Settle(context.Context, queue.Delivery, queue.Outcome) error { return f.err }

func invoke(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/EventWorker", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	return rec
}

func fixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../customhandler/testdata/servicebus-invocation.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEventWorker_hands_the_decoded_message_to_the_worker_and_answers_200_json(t *testing.T) {
	w := &fakeWorker{outcome: queue.Outcome{Kind: queue.Complete, Summary: "processed evt_01HZX9"}}
	rec := invoke(t, httpworker.New(w, w, "msg", slog.New(slog.DiscardHandler), httpworker.Options{}), fixture(t))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if w.got.MessageID != "evt_01HZX9" || w.got.DeliveryCount != 1 || !strings.HasPrefix(string(w.got.Body), `{"eventId"`) {
		t.Errorf("delivery = %+v (body %s)", w.got, w.got.Body)
	}
	var res struct{ Logs []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || len(res.Logs) != 1 || res.Logs[0] != "processed evt_01HZX9" {
		t.Errorf("body %s (%v)", rec.Body, err)
	}
}

func TestEventWorker_answers_500_when_the_outcome_could_not_be_made_true(t *testing.T) {
	w := &fakeWorker{outcome: queue.Outcome{Kind: queue.DeadLetter}, err: errors.New("dead-letter queue unreachable")}
	rec := invoke(t, httpworker.New(w, w, "msg", slog.New(slog.DiscardHandler), httpworker.Options{}), fixture(t))
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func TestEventWorker_answers_500_to_an_envelope_it_cannot_read(t *testing.T) {
	w := &fakeWorker{}
	rec := invoke(t, httpworker.New(w, w, "msg", slog.New(slog.DiscardHandler), httpworker.Options{}), `{"Data":{}}`)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("answered %d", rec.Code)
	}
	if w.got.MessageID != "" || w.got.Body != nil {
		t.Errorf("the worker ran on an unreadable envelope: %+v", w.got)
	}
}

func TestEventWorker_answers_500_to_an_invocation_over_the_size_limit(t *testing.T) {
	w := &fakeWorker{}
	huge := `{"Data":{"msg":"` + strings.Repeat("a", 9<<20) + `"},"Metadata":{}}`
	rec := invoke(t, httpworker.New(w, w, "msg", slog.New(slog.DiscardHandler), httpworker.Options{}), huge)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("answered %d", rec.Code)
	}
	if w.got.Body != nil {
		t.Errorf("the worker ran on a cut-off invocation")
	}
}
