package config

import (
	"fmt"
	"strings"
)

// intakeBytes reads DVRELAY_MAX_BYTES_IN_FLIGHT, the bound on the bytes of the bodies the intake
// holds at once. Its default follows the body limit and the in-flight bound
// (DefaultMaxBytesInFlight), so raising either raises it in step.
func (r *reader) intakeBytes(c *Config) {
	const name = "DVRELAY_MAX_BYTES_IN_FLIGHT"
	c.MaxBytesInFlight = r.positiveInt64(name, DefaultMaxBytesInFlight(c.MaxBodyBytes, c.MaxInFlight))
	if c.MaxBytesInFlight < c.MaxBodyBytes {
		r.fail(name, fmt.Sprintf("must be at least DVRELAY_MAX_BODY_BYTES (%d): a body at the limit could never be taken", c.MaxBodyBytes))
	}
}

// DefaultMaxBytesInFlight is MaxBytesInFlight when Config leaves it zero: room for four bodies
// at the body limit, never less than one, and never more than MaxInFlight of them (more could not
// be in flight). A body costs many times its size while it is parsed, checked and queued, and the
// collector lets the heap grow to five times what is live (handler/gc.go), so the bytes held
// decide the process's peak memory: 64 clients posting bodies of about 1 MB took it to 296 MiB
// with no bound, 281 MiB with 16 bodies' worth, about 130 MiB with four (the reliability suite).
// Four bodies at the default limit is 16 of the largest payloads Dataverse sends (256 KB), and
// hundreds of its usual ones.
func DefaultMaxBytesInFlight(maxBodyBytes int64, maxInFlight int) int64 {
	const bodies = 4
	return min(max(bodies*maxBodyBytes, maxBodyBytes), int64(maxInFlight)*maxBodyBytes)
}

// connectionReserve is what DVRELAY_MAX_CONNECTIONS's default leaves of the file descriptor limit
// for everything else the process opens: the standard streams, the listener, the embedded queue's
// files, a log file, a health probe's connection and some slack.
const connectionReserve = 32

// connections reads DVRELAY_MAX_CONNECTIONS. Its default is what the process's file descriptor
// limit (RLIMIT_NOFILE, as Go raised it at start) leaves once connectionReserve and the worker's
// outbound connections (up to its concurrency in use, and the idle ones its clients keep, see
// internal/platform/outbound) are set aside, and at most DefaultMaxConnections. Past the cap new
// connections wait in the kernel's backlog; past the descriptor limit accept fails and every
// caller, health included, waits. Where the limit cannot be read, the default is
// DefaultMaxConnections.
func (r *reader) connections(c *Config, fdLimit func() (uint64, bool)) {
	const name = "DVRELAY_MAX_CONNECTIONS"
	def := DefaultMaxConnections
	limit, known := fdLimit()
	if known {
		def = connectionRoom(limit, c.WorkerConcurrency)
	}
	c.MaxConnections = r.positiveInt(name, max(def, 1))
	if v, set := r.lookup(name); (!set || strings.TrimSpace(v) == "") && def <= c.MaxInFlight {
		r.fail(name, fmt.Sprintf("the file descriptor limit (ulimit -n) of %d leaves room for %d connections, not above "+
			"DVRELAY_MAX_INFLIGHT (%d): raise the limit, or set DVRELAY_MAX_CONNECTIONS and DVRELAY_MAX_INFLIGHT lower", limit, def, c.MaxInFlight))
	}
}

// connectionRoom is what limit descriptors leave for client connections.
func connectionRoom(limit uint64, workerConcurrency int) int {
	outbound := workerConcurrency + max(workerConcurrency, outboundIdleConns)
	reserve := uint64(connectionReserve + outbound)
	if limit <= reserve {
		return 0
	}
	return int(min(limit-reserve, uint64(DefaultMaxConnections)))
}

// outboundIdleConns is the idle connections the outbound clients keep at least (maxIdleConns in
// internal/platform/outbound).
const outboundIdleConns = 100
