//go:build !unix

package local

// processAlive cannot tell here; the embedded queue does not run on these systems anyway
// (see lockDir), so a record is taken at its word.
func processAlive(pid int) bool { return pid > 0 }
