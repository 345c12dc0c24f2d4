//go:build !unix

package config

// openFileLimit is unknown where there is no RLIMIT_NOFILE (Windows counts handles otherwise);
// DVRELAY_MAX_CONNECTIONS then defaults to DefaultMaxConnections.
func openFileLimit() (uint64, bool) { return 0, false }
