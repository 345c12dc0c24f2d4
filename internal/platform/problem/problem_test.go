package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/problem"
)

func TestWrite_answers_the_status_with_a_problem_document(t *testing.T) {
	rec := httptest.NewRecorder()
	problem.Write(rec, problem.New(http.StatusNotFound, "dead-letter-not-found", "Dead letter not found", "no dead-lettered message has sequence number 7"))

	if rec.Code != http.StatusNotFound {
		t.Errorf("status = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type":   "https://dvrelay.dev/problems/dead-letter-not-found",
		"title":  "Dead letter not found",
		"status": float64(404),
		"detail": "no dead-lettered message has sequence number 7",
	}
	if len(got) != len(want) {
		t.Errorf("document = %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestInternal_says_nothing_about_the_cause(t *testing.T) {
	body, status := problem.Internal().Marshal()
	if status != http.StatusInternalServerError {
		t.Errorf("status = %d", status)
	}
	if string(body) != `{"type":"about:blank","title":"Internal Server Error","status":500}` {
		t.Errorf("body = %s", body)
	}
}
