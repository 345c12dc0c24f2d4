package recovery

import (
	"fmt"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/lookback"
)

// ParseSince reads how far back to look, in lookback's grammar; a time in the future finds no
// failed job, so it is refused.
func ParseSince(s string, now time.Time) (time.Time, error) {
	t, err := lookback.Parse(s, now)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %w", err)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("--since %q is in the future", s)
	}
	return t, nil
}
