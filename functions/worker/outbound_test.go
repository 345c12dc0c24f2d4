package worker_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func TestWorker_a_Dataverse_redirect_sends_nothing_elsewhere_and_is_not_reported_done(t *testing.T) {
	h := newHarness(t)
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer other.Close()
	location := other.URL + "/api/data/v9.2/opportunities(" + recordID + ")"
	// The Dataverse URL answers its metadata as usual but sends every PATCH to another port.
	dv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			w.Header().Set("Location", location)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		h.dv.ServeHTTP(w, r)
	}))
	defer dv.Close()
	h.dvURL = dv.URL
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests, want none (the token and the write went to another host)", n)
	}
	if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonPermanentFailure || out.Step != "write-score" {
		t.Fatalf("outcome = %+v, want dead-letter PermanentFailure at write-score", out)
	}
	if !strings.Contains(out.Description, "307") || !strings.Contains(out.Description, location) {
		t.Errorf("description %q does not name the status and the Location", out.Description)
	}
	if n := len(h.erp.calls()); n != 0 {
		t.Errorf("ERP calls = %d, want none after the failed write", n)
	}
	for _, l := range h.logs.lines(t) {
		if l["msg"] == "step" && l["step"] == "write-score" && l["status"] != "failed" {
			t.Errorf("write-score logged %v, want status failed", l["status"])
		}
	}
}

func TestWorker_retries_a_TLS_verification_failure_and_logs_its_cause(t *testing.T) {
	h := newHarness(t)
	// A certificate no trust store knows: what an expired or replaced certificate looks like
	// from the worker's side.
	srv := httptest.NewUnstartedServer(h.credit)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	h.settings["DVRELAY_CREDIT_URL"] = srv.URL + "/score?code=function-key-abc"
	w := h.worker(t, worker.Config{})

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.RetryLater || out.Step != "credit-score" {
		t.Fatalf("outcome = %+v, want retry-later at credit-score (an operator fixes a certificate; events must not be dead-lettered meanwhile)", out)
	}
	if n := len(h.credit.calls()); n != 0 {
		t.Errorf("credit calls = %d, want none past a failed handshake", n)
	}
	var logged bool
	for _, l := range h.logs.lines(t) {
		if l["msg"] != "step" || l["step"] != "credit-score" {
			continue
		}
		logged = true
		if e, _ := l["error"].(string); l["class"] != "transient" || !strings.Contains(e, "certificate") {
			t.Errorf("step log line = %v, want class transient and the certificate error", l)
		}
	}
	if !logged {
		t.Error("no step log line for credit-score")
	}
}
