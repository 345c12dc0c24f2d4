//go:build unix

package config_test

import (
	"strings"
	"syscall"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

// withOpenFileLimit runs f with the process's soft limit on open files set to n.
func withOpenFileLimit(t *testing.T, n uint64, f func()) {
	t.Helper()
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Skipf("no RLIMIT_NOFILE here: %v", err)
	}
	if uint64(was.Max) < n {
		t.Skipf("the hard limit %d is below %d", was.Max, n)
	}
	lowered := was
	lowered.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Skipf("cannot set the soft limit: %v", err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
			t.Errorf("restore the soft limit: %v", err)
		}
	}()
	f()
}

func TestLoad_derives_the_connection_cap_from_the_file_descriptor_limit(t *testing.T) {
	// The worker's 16 connections in use and the 100 its clients keep idle, and 32 more for the
	// process's own files, are left out.
	for _, tc := range []struct {
		limit uint64
		env   map[string]string
		want  int
	}{
		{1024, nil, 1024 - 32 - 16 - 100},
		{4096, nil, 4096 - 32 - 16 - 100},
		{1 << 20, nil, config.DefaultMaxConnections},
		{1024, map[string]string{"DVRELAY_WORKER_CONCURRENCY": "200"}, 1024 - 32 - 200 - 200},
		{1024, map[string]string{"DVRELAY_MAX_CONNECTIONS": "2000"}, 2000},
	} {
		withOpenFileLimit(t, tc.limit, func() {
			c, err := config.Load(lookupFrom(tc.env))
			if err != nil {
				t.Fatalf("ulimit -n %d: %v", tc.limit, err)
			}
			if c.MaxConnections != tc.want {
				t.Errorf("ulimit -n %d, %v: MaxConnections = %d, want %d", tc.limit, tc.env, c.MaxConnections, tc.want)
			}
		})
	}
}

func TestLoad_says_when_the_file_descriptor_limit_leaves_too_few_connections(t *testing.T) {
	withOpenFileLimit(t, 200, func() {
		_, err := config.Load(lookupFrom(nil))
		if err == nil || !strings.Contains(err.Error(), "DVRELAY_MAX_CONNECTIONS: the file descriptor limit (ulimit -n) of 200") {
			t.Errorf("err = %v", err)
		}
	})
}
