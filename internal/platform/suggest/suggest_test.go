package suggest_test

import (
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/suggest"
)

func TestDistance_counts_a_swap_of_neighbours_as_one_edit(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"DVRELAY_ERP_ULR", "DVRELAY_ERP_URL", 1},
		{"estimatedvalu", "estimatedvalue", 1},
		{"Permanent", "permanent", 0},
		{"DVRELAY_CRM_URL", "DVRELAY_ERP_URL", 2},
		{"", "abc", 3},
	} {
		if got := suggest.Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNearest_returns_the_closest_candidate(t *testing.T) {
	got, d := suggest.Nearest("estimatedvalu", []string{"name", "estimatedvalue", "statuscode"})
	if got != "estimatedvalue" || d != 1 {
		t.Errorf("Nearest = %q, %d; want estimatedvalue, 1", got, d)
	}
	if got, d := suggest.Nearest("x", nil); got != "" || d != -1 {
		t.Errorf("Nearest with no candidates = %q, %d", got, d)
	}
}
