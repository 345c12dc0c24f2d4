package recovery

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSince reads how far back to look: a date (2026-11-01, midnight UTC), a date and time
// in RFC 3339 (2026-11-01T08:00:00Z), or a span back from now (48h, 90m, 7d).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	t, ok := parseSince(s, now)
	if !ok {
		return time.Time{}, fmt.Errorf("--since %q: give a date (2026-11-01), a date and time (2026-11-01T08:00:00Z) or how far back to look (48h, 7d)", s)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("--since %q is in the future", s)
	}
	return t.UTC(), nil
}

func parseSince(s string, now time.Time) (time.Time, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		return now.AddDate(0, 0, -n), err == nil && n > 0
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), d > 0
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	t, err := time.Parse(time.DateOnly, s)
	return t, err == nil
}
