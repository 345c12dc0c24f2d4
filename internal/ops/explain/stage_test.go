package explain_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/ops/explain"
)

// preOperation is the sample Update as a synchronous PreOperation step posts it.
func preOperation(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("../../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	m["Stage"], m["Mode"], m["IsInTransaction"] = 20, 0, true
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestRun_shows_that_a_synchronous_PreOperation_event_would_not_be_queued(t *testing.T) {
	s := newSetup(t, nil)
	rep, text := s.run(t, webhook.Config{}, preOperation(t), http.Header{"Content-Type": {"application/json"}})
	if rep.Status != http.StatusOK || rep.Accepted() {
		t.Fatalf("status %d:\n%s", rep.Status, text)
	}
	last := rep.Checks[len(rep.Checks)-1]
	if last.Name != "stage" || last.Verdict != explain.Fail || !strings.Contains(last.Detail, "stage 20 (PreOperation)") || !strings.Contains(last.Detail, "not queued") {
		t.Errorf("stage check = %+v", last)
	}
	for _, want := range []string{"intake: not queued, 200", "the intake would answer 200 and queue nothing", `"queued": false`} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestRun_shows_the_stage_of_a_queued_event(t *testing.T) {
	s := newSetup(t, nil)
	rep, text := s.run(t, webhook.Config{AcceptStages: []int{20, 40}}, preOperation(t), http.Header{"Content-Type": {"application/json"}})
	if !rep.Accepted() {
		t.Fatalf("status %d:\n%s", rep.Status, text)
	}
	if !strings.Contains(text, "pass  stage: stage 20 (PreOperation), synchronous: accepted by DVRELAY_ACCEPT_STAGES") {
		t.Errorf("report:\n%s", text)
	}
}
