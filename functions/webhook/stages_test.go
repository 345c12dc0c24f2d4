package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/event"
)

// fromStage is the documented contact Update as posted by a step of stage and mode (mode < 0:
// the body does not say), registered as step.
func fromStage(t *testing.T, stage, mode int, step string) []byte {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(readTestdata(t, nativeContact)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	m["Stage"] = stage
	m["IsInTransaction"] = stage != event.StagePostOperation || mode == event.ModeSynchronous
	if mode < 0 {
		delete(m, "Mode")
	} else {
		m["Mode"] = mode
	}
	m["OwningExtension"].(map[string]any)["Id"] = step
	m["OwningExtension"].(map[string]any)["Name"] = "dvrelay: Update of contact"
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type stageHarness struct {
	in   *webhook.Intake
	pub  *recordingPublisher
	logs *syncBuffer
}

func newStageHarness(t *testing.T, accept []int) *stageHarness {
	t.Helper()
	h := &stageHarness{pub: &recordingPublisher{}, logs: &syncBuffer{}}
	h.in = webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}, AcceptStages: accept},
		newRealParser(t), h.pub, slog.New(slog.NewJSONHandler(h.logs, nil)))
	return h
}

// warnings are the stage warnings logged so far, as decoded JSON lines.
func (h *stageHarness) warnings(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry["msg"] == "webhook step posts before the change is committed" {
			out = append(out, entry)
		}
	}
	return out
}

const (
	stepA = "11111111-a35d-ef11-bfe3-6045bd03d9d8"
	stepB = "22222222-a35d-ef11-bfe3-6045bd03d9d8"
)

func TestIntake_answers_a_synchronous_PreOperation_step_2xx_without_queueing_it(t *testing.T) {
	h := newStageHarness(t, nil)
	res := h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, stepA)))
	// Any other answer would fail the user's save: Dataverse runs a synchronous step inside it.
	if res.Status != http.StatusOK {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	var body struct {
		EventID string `json:"eventId"`
		Queued  *bool  `json:"queued"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Queued == nil || *body.Queued || body.EventID == "" ||
		!strings.Contains(body.Reason, "stage 20 (PreOperation)") || !strings.Contains(body.Reason, "DVRELAY_ACCEPT_STAGES") {
		t.Errorf("answer = %s", res.Body)
	}
	if n := len(h.pub.messages()); n != 0 {
		t.Errorf("published %d messages, want none", n)
	}
	if !strings.Contains(h.logs.String(), `"outcome":"not-queued-stage"`) {
		t.Errorf("the request log does not say the event was not queued: %s", h.logs)
	}
}

func TestIntake_treats_a_step_that_does_not_say_its_mode_as_synchronous(t *testing.T) {
	h := newStageHarness(t, nil)
	res := h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreValidation, -1, stepA)))
	if res.Status != http.StatusOK || len(h.pub.messages()) != 0 {
		t.Errorf("status = %d, published %d", res.Status, len(h.pub.messages()))
	}
}

func TestIntake_refuses_an_asynchronous_step_from_a_stage_not_accepted_with_422(t *testing.T) {
	// Dataverse runs asynchronous steps only at 40; with 40 left out, its system job fails with
	// the answer, where an administrator sees it.
	h := newStageHarness(t, []int{event.StagePreOperation})
	res := h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePostOperation, event.ModeAsynchronous, stepA)))
	if res.Status != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	p := decodeProblem(t, res)
	if p.Type != webhook.ProblemTypeBase+"stage-not-accepted" || !strings.Contains(p.Detail, "stage 40 (PostOperation)") || !strings.Contains(p.Detail, "20") {
		t.Errorf("problem = %+v", p)
	}
	if n := len(h.pub.messages()); n != 0 {
		t.Errorf("published %d messages, want none", n)
	}
}

func TestIntake_queues_a_Stage_20_event_with_Stage_20_when_the_policy_accepts_it(t *testing.T) {
	h := newStageHarness(t, []int{event.StagePreOperation, event.StagePostOperation})
	res := h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, stepA)))
	if res.Status != http.StatusAccepted {
		t.Fatalf("status = %d, body %s", res.Status, res.Body)
	}
	msgs := h.pub.messages()
	if len(msgs) != 1 {
		t.Fatalf("published %d messages", len(msgs))
	}
	var queued map[string]any
	if err := json.Unmarshal(msgs[0].Body, &queued); err != nil {
		t.Fatal(err)
	}
	if queued["Stage"] != float64(20) || queued["Mode"] != float64(0) || queued["IsInTransaction"] != true {
		t.Errorf("queued Stage, Mode, IsInTransaction = %v, %v, %v", queued["Stage"], queued["Mode"], queued["IsInTransaction"])
	}
	// Accepted, but still a step that posts before the commit: the operator hears of it once.
	if w := h.warnings(t); len(w) != 1 || w[0]["stepId"] != stepA || w[0]["action"] != "queued" {
		t.Errorf("warnings = %v", w)
	}
}

func TestIntake_queues_PostOperation_events_by_default_without_a_warning(t *testing.T) {
	h := newStageHarness(t, nil)
	for _, mode := range []int{event.ModeSynchronous, event.ModeAsynchronous} {
		res := h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePostOperation, mode, stepA)))
		if res.Status != http.StatusAccepted {
			t.Errorf("mode %d: status = %d, body %s", mode, res.Status, res.Body)
		}
	}
	if w := h.warnings(t); len(w) != 0 {
		t.Errorf("warnings = %v", w)
	}
}

func TestIntake_warns_once_per_step_that_posts_from_an_unsafe_stage(t *testing.T) {
	h := newStageHarness(t, nil)
	for range 3 {
		for _, step := range []string{stepA, stepB} {
			h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, step)))
		}
	}
	h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreValidation, event.ModeSynchronous, stepA)))
	w := h.warnings(t)
	if len(w) != 2 || w[0]["stepId"] != stepA || w[1]["stepId"] != stepB {
		t.Fatalf("warnings = %v, want one for each step", w)
	}
	if w[0]["level"] != "WARN" || w[0]["stage"] != float64(20) || w[0]["stepName"] != "dvrelay: Update of contact" ||
		!strings.Contains(fmt.Sprint(w[0]["action"]), "not queued") || !strings.Contains(fmt.Sprint(w[0]["fix"]), "PostOperation (40)") {
		t.Errorf("warning = %v", w[0])
	}
}

func TestIntake_remembers_a_bounded_number_of_warned_steps(t *testing.T) {
	h := newStageHarness(t, nil)
	const steps = 1100 // more than the intake remembers
	for i := range steps {
		h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, fmt.Sprintf("%08x-a35d-ef11-bfe3-6045bd03d9d8", i))))
	}
	if n := len(h.warnings(t)); n != steps {
		t.Fatalf("%d warnings for %d new steps", n, steps)
	}
	// The set was emptied when full, not grown: the first step is new to it again; the last is not.
	h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, fmt.Sprintf("%08x-a35d-ef11-bfe3-6045bd03d9d8", steps-1))))
	h.in.Handle(context.Background(), nativeRequest(fromStage(t, event.StagePreOperation, event.ModeSynchronous, fmt.Sprintf("%08x-a35d-ef11-bfe3-6045bd03d9d8", 0))))
	if n := len(h.warnings(t)); n != steps+1 {
		t.Errorf("%d warnings, want %d", n, steps+1)
	}
}

func TestEventMessage_gives_an_event_without_a_record_its_EventId_as_session(t *testing.T) {
	m, err := webhook.EventMessage(event.Event{EventID: "e1", EventName: "NewOrderSubmitted"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.SessionID != "e1" {
		t.Errorf("SessionID = %q, want the EventId", m.SessionID)
	}
}
