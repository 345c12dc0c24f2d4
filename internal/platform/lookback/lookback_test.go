package lookback_test

import (
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/lookback"
)

func TestParse_reads_spans_days_dates_and_times(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"48h":                       now.Add(-48 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"0s":                        now,
		"7d":                        now.AddDate(0, 0, -7),
		"1.5d":                      now.Add(-36 * time.Hour),
		"0d":                        now,
		" 7d ":                      now.AddDate(0, 0, -7),
		"2026-11-01":                time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-01T08:00:00+01:00": time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC),
		"2026-11-01T08:00:00.5Z":    time.Date(2026, 11, 1, 8, 0, 0, 5e8, time.UTC),
	} {
		got, err := lookback.Parse(in, now)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("Parse(%q) = %v, %v; want %v in UTC", in, got, err, want)
		}
	}
}

func TestParse_refuses_what_is_not_a_point_in_the_past_and_says_what_it_reads(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	for _, in := range []string{"", "yesterday", "-2h", "-1d", "d", "1e400d", "NaNd", "2026-13-01", "7 d"} {
		_, err := lookback.Parse(in, now)
		if err == nil {
			t.Errorf("Parse(%q) accepted", in)
			continue
		}
		if got := err.Error(); got != `"`+in+`": want `+lookback.Grammar {
			t.Errorf("Parse(%q) = %q", in, got)
		}
	}
}
