package queue_test

import (
	"strconv"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// TestMessageIDs_and_attempts_follow_one_rule_in_every_backend pins the names retries and
// resubmissions get (unique per chain, short) and how the Attempt property is read, whatever
// integer type the transport delivered it as.
func TestMessageIDs_and_attempts_follow_one_rule_in_every_backend(t *testing.T) {
	const at = int64(1764050000000000000) // a resubmission time in ns
	attempt := func(v any) string {
		if v == nil {
			return strconv.Itoa(queue.Attempt(map[string]any{}))
		}
		return strconv.Itoa(queue.Attempt(map[string]any{queue.PropAttempt: v}))
	}
	tests := []struct {
		name, got, want string
	}{
		{"first retry", queue.RetryID("e", 2), "e/retry/2"},
		{"next retry", queue.RetryID("e/retry/2", 3), "e/retry/3"},
		{"retry suffix that is not a number stays", queue.RetryID("e/retry/x", 2), "e/retry/x/retry/2"},
		{"retry of a resubmitted chain", queue.RetryID("e/resubmit/9/retry/2", 3), "e/resubmit/9/retry/3"},
		{"first retry of a resubmitted chain", queue.RetryID("e/resubmit/9", 2), "e/resubmit/9/retry/2"},
		{"resubmit of the intake's message", queue.ResubmitID("e", at), "e/resubmit/1764050000000000000"},
		{"resubmit of a retry", queue.ResubmitID("e/retry/5", at), "e/resubmit/1764050000000000000"},
		{"resubmit of a resubmitted retry", queue.ResubmitID("e/resubmit/1/retry/5", at), "e/resubmit/1764050000000000000"},
		{"counted resubmit", queue.ResubmitID("e/resubmit/1", 2), "e/resubmit/2"},
		{"base of a resubmitted retry", queue.BaseID("e/resubmit/1/retry/5"), "e"},
		{"attempt as int", attempt(3), "3"},
		{"attempt as int32", attempt(int32(3)), "3"},
		{"attempt as int64", attempt(int64(3)), "3"},
		{"attempt as uint32", attempt(uint32(3)), "3"},
		{"attempt as float64 from JSON", attempt(3.0), "3"},
		{"attempt as string", attempt("3"), "3"},
		{"attempt missing", attempt(nil), "1"},
		{"attempt zero", attempt(int64(0)), "1"},
		{"attempt negative", attempt("-2"), "1"},
		{"attempt not a number", attempt("three"), "1"},
		{"attempt of another type", attempt(true), "1"},
		{"retry attempt given", strconv.Itoa(queue.RetryAttempt(map[string]any{queue.PropAttempt: int64(2)}, map[string]any{queue.PropAttempt: 5})), "5"},
		{"retry attempt counted up", strconv.Itoa(queue.RetryAttempt(map[string]any{queue.PropAttempt: "3"}, nil)), "4"},
		{"retry attempt of the first chain", strconv.Itoa(queue.RetryAttempt(nil, nil)), "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
