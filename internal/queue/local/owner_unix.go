//go:build unix

package local

import (
	"errors"
	"syscall"
)

// processAlive reports whether pid names a running process: signal 0 checks without sending
// anything, and EPERM means it exists under another user.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
