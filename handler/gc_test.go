package main

import (
	"runtime/debug"
	"testing"
)

// The process's collector settings are global: each case restores them.
func TestTuneGC_sets_server_defaults_unless_the_operator_set_GOGC_or_GOMEMLIMIT(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"neither set", nil, gcPercent, memoryLimit},
		{"GOGC set", map[string]string{"GOGC": "50"}, 77, memoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, gcPercent, 123 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Stand-ins for what the runtime would have read from the operator's variables.
			oldPercent := debug.SetGCPercent(77)
			oldLimit := debug.SetMemoryLimit(123 << 20)
			t.Cleanup(func() {
				debug.SetGCPercent(oldPercent)
				debug.SetMemoryLimit(oldLimit)
			})
			tuneGC(func(name string) (string, bool) { v, ok := tc.env[name]; return v, ok })
			if got := debug.SetGCPercent(77); got != tc.wantPercent {
				t.Errorf("GC percent = %d, want %d", got, tc.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
				t.Errorf("memory limit = %d, want %d", got, tc.wantLimit)
			}
		})
	}
}
