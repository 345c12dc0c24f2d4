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

// The embedded queue's long-lived memory raises the limit tuneGC set, and follows it down; a
// limit set by anyone else is left alone.
func TestRetainedMemory_raises_only_the_limit_tuneGC_set(t *testing.T) {
	old := debug.SetMemoryLimit(memoryLimit)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	var r retainedMemory
	r.set(30 << 20)
	if got := debug.SetMemoryLimit(-1); got != memoryLimit+30<<20 {
		t.Errorf("limit with 30 MiB retained = %d, want %d", got, memoryLimit+30<<20)
	}
	r.set(10 << 20)
	if got := debug.SetMemoryLimit(-1); got != memoryLimit+10<<20 {
		t.Errorf("limit after the queue dropped to 10 MiB = %d, want %d", got, memoryLimit+10<<20)
	}

	debug.SetMemoryLimit(1 << 30) // the operator's GOMEMLIMIT
	var other retainedMemory
	other.set(30 << 20)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("an operator's 1 GiB limit became %d, want it left alone", got)
	}
}
