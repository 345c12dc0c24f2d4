package config_test

import (
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

func TestLoad_bounds_the_bytes_in_flight_by_the_body_limit_and_the_in_flight_bound(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int64
	}{
		{"defaults: 4 bodies of 1 MiB", nil, 4 << 20},
		{"a larger body limit raises it", map[string]string{"DVRELAY_MAX_BODY_BYTES": "2097152"}, 8 << 20},
		{"never more bodies than in flight", map[string]string{"DVRELAY_MAX_INFLIGHT": "2", "DVRELAY_MAX_CONNECTIONS": "100"}, 2 << 20},
		{"set", map[string]string{"DVRELAY_MAX_BYTES_IN_FLIGHT": "5000000"}, 5_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Load(lookupFrom(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.MaxBytesInFlight != tc.want {
				t.Errorf("MaxBytesInFlight = %d, want %d", c.MaxBytesInFlight, tc.want)
			}
		})
	}
}

func TestLoad_refuses_a_bytes_bound_below_the_body_limit(t *testing.T) {
	_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_MAX_BYTES_IN_FLIGHT": "1000"}))
	if err == nil || !strings.Contains(err.Error(), "DVRELAY_MAX_BYTES_IN_FLIGHT: must be at least DVRELAY_MAX_BODY_BYTES") {
		t.Errorf("err = %v", err)
	}
}
