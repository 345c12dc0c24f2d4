//go:build !unix

package local

import (
	"errors"
	"os"
)

// lockDir refuses to run where flock is not available: without it two processes could share
// one data directory and deliver each message twice at the same time.
func lockDir(dir string) (*os.File, error) {
	return nil, errors.New("the embedded queue needs a Unix-like OS for its directory lock; use Service Bus here")
}

func unlockDir(f *os.File) error { return f.Close() }
