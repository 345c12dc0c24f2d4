package worker_test

import (
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

func TestDeadLetterInfo_names_the_failed_step_once_and_keeps_the_delivery_trail(t *testing.T) {
	d := queue.Delivery{
		MessageID:             "evt-1/retry/4",
		DeliveryCount:         2,
		ApplicationProperties: map[string]any{queue.PropAttempt: int64(4)},
	}
	tests := []struct {
		name            string
		out             queue.Outcome
		wantReason      string
		wantDescription string
	}{
		{"the worker's description already names the step",
			queue.Outcome{Reason: queue.ReasonPermanentFailure, Step: "erp", Description: "route sync step erp: erp answered 422"},
			queue.ReasonPermanentFailure, "route sync step erp: erp answered 422"},
		{"a description without the step gets it in front",
			queue.Outcome{Reason: queue.ReasonPermanentFailure, Step: "erp", Description: "erp answered 422"},
			queue.ReasonPermanentFailure, "step erp: erp answered 422"},
		{"a step without a description",
			queue.Outcome{Reason: queue.ReasonMaxAttemptsExceeded, Step: "erp"},
			queue.ReasonMaxAttemptsExceeded, "step erp"},
		{"no step",
			queue.Outcome{Reason: queue.ReasonInvalidMessage, Description: "not an event"},
			queue.ReasonInvalidMessage, "not an event"},
		{"a step whose name starts another step's",
			queue.Outcome{Reason: queue.ReasonPermanentFailure, Step: "erp", Description: "route sync step erp-sync: 400"},
			queue.ReasonPermanentFailure, "step erp: route sync step erp-sync: 400"},
		{"no reason is a permanent failure",
			queue.Outcome{Description: "x"},
			queue.ReasonPermanentFailure, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.out.Kind = queue.DeadLetter
			got := queue.DeadLetterInfoFor(d, tt.out)
			want := queue.DeadLetterInfo{
				Reason:                tt.wantReason,
				Description:           tt.wantDescription,
				FailedStep:            tt.out.Step,
				OriginalMessageID:     "evt-1/retry/4",
				OriginalDeliveryCount: 2,
				Attempt:               4,
			}
			if got != want {
				t.Errorf("DeadLetterInfo = %+v, want %+v", got, want)
			}
		})
	}
}
