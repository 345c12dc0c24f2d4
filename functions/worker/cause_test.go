package worker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// The ERP's reason is what support needs to act on a dead letter; it may quote customer data,
// so it goes to the dead-letter description only, never to a log line or the host's Logs.
func TestWorker_dead_letter_description_keeps_what_the_downstream_answered_and_the_logs_do_not(t *testing.T) {
	const reason = `{"message":"customer account 4711 is blocked in ERP"}`
	tests := []struct {
		name    string
		setup   func(h *harness)
		step    string
		status  string // in the step failure log line
		want    string // in the description
		secret  string // in the description, never in the logs
		attempt int
		cfg     worker.Config
		outcome string
	}{
		{
			name: "ERP answers 400 with a JSON reason",
			setup: func(h *harness) {
				h.erp.script = func(int) reply { return reply{status: http.StatusBadRequest, body: reason + "\n"} }
			},
			step:    "erp-sync",
			status:  "400 Bad Request",
			want:    `route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request: ` + reason,
			secret:  "customer account 4711 is blocked",
			attempt: 1,
			outcome: queue.ReasonPermanentFailure,
		},
		{
			name: "Dataverse refuses the update with an error message",
			setup: func(h *harness) {
				h.dv.patchReply = func(int) reply {
					return reply{status: http.StatusBadRequest, body: `{"error":{"code":"0x80040265","message":"Credit score 712 is above the limit for Bluebird"}}`}
				}
			},
			step:    "write-score",
			status:  "400 Bad Request (code 0x80040265)",
			want:    `(code 0x80040265): Credit score 712 is above the limit for Bluebird`,
			secret:  "above the limit for Bluebird",
			attempt: 1,
			outcome: queue.ReasonPermanentFailure,
		},
		{
			name: "ERP keeps answering 503 until attempts are spent",
			setup: func(h *harness) {
				h.erp.script = func(int) reply {
					return reply{status: http.StatusServiceUnavailable, body: "maintenance for tenant Contoso until 06:00"}
				}
			},
			step:    "erp-sync",
			status:  "503 Service Unavailable",
			want:    `attempt 2 of 2 failed: route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 503 Service Unavailable: maintenance for tenant Contoso until 06:00`,
			secret:  "maintenance for tenant Contoso",
			attempt: 2,
			cfg:     worker.Config{MaxAttempts: 2},
			outcome: queue.ReasonMaxAttemptsExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.setup(h)
			w := h.worker(t, tt.cfg)

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), tt.attempt))

			if out.Kind != queue.DeadLetter || out.Reason != tt.outcome || out.Step != tt.step {
				t.Fatalf("outcome = %+v, want dead-letter %s at %s", out, tt.outcome, tt.step)
			}
			if !strings.Contains(out.Description, tt.want) {
				t.Errorf("description\n\t%s\ndoes not hold\n\t%s", out.Description, tt.want)
			}
			if strings.Contains(out.Summary, tt.secret) {
				t.Errorf("summary (the host's invocation Logs) quotes the answer: %s", out.Summary)
			}
			logs := h.logs.String()
			if strings.Contains(logs, tt.secret) {
				t.Errorf("the logs quote the answer:\n%s", logs)
			}
			var failed map[string]any
			for _, l := range h.logs.lines(t) {
				if l["msg"] == "step" && l["status"] == "failed" {
					failed = l
				}
			}
			if failed == nil {
				t.Fatalf("no step failure log line in\n%s", logs)
			}
			if msg, _ := failed["error"].(string); !strings.Contains(msg, tt.status) {
				t.Errorf("step failure log line %q does not name the status %q", msg, tt.status)
			}
		})
	}
}

func TestWorker_dead_letter_description_shows_the_answer_as_one_line_of_text_cut_at_512_bytes(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{
			name: "control characters are escaped, so the answer cannot forge lines or colours",
			body: "refused:\r\n\tline two \x1b[31mred\x1b[0m\u202e",
			want: `refused:\r\n\tline two \u001b[31mred\u001b[0m\u202e`,
		},
		{
			name: "invalid UTF-8 is replaced",
			body: "caf\xe9 closed",
			want: "caf\uFFFD closed",
		},
		{
			name: "only the first 512 bytes are kept",
			body: strings.Repeat("a", 511) + "é" + strings.Repeat("b", 100),
			// The é that straddles byte 512 is dropped whole, not shown half.
			want: strings.Repeat("a", 511) + "…",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.erp.script = func(int) reply { return reply{status: http.StatusUnprocessableEntity, body: tt.body} }
			w := h.worker(t, worker.Config{})

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.DeadLetter {
				t.Fatalf("outcome = %+v, want dead-letter", out)
			}
			const status = "POST ${DVRELAY_ERP_URL}: 422 Unprocessable Entity: "
			_, answer, ok := strings.Cut(out.Description, status)
			if !ok || answer != tt.want {
				t.Errorf("description\n\t%q\nwant it to end with\n\t%q", out.Description, status+tt.want)
			}
		})
	}
}
