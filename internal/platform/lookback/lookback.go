// Package lookback reads how far back an operator's command looks (--since, --older-than): one
// grammar for every command that takes a point in the past.
package lookback

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Grammar says, for error text and help, what Parse reads.
const Grammar = "a span back from now (90m, 36h, 1.5d, 7d), a date (2026-11-01, midnight UTC) or a date and time (2026-11-01T08:00:00Z)"

// Parse reads s as a point in time, relative to now:
//   - a span back from now: a Go duration (90m, 36h, 1h30m) or a number of days (7d, 1.5d),
//     not negative;
//   - a date, 2026-11-01, at midnight UTC;
//   - a date and time in RFC 3339, 2026-11-01T08:00:00Z or with an offset.
//
// Blanks around s are ignored. The result is in UTC.
func Parse(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n >= 0 && n <= maxDays {
			return now.Add(-time.Duration(n * float64(24*time.Hour))).UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want %s", s, Grammar)
}

// maxDays keeps a span of days within what a time.Duration holds (about 292 years).
const maxDays = 100 * 365
