//go:build unix

package config

import "syscall"

// openFileLimit is the process's limit on open file descriptors (the soft RLIMIT_NOFILE, which
// Go raises to the hard limit at start).
func openFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return uint64(lim.Cur), true // int64 on some systems
}
