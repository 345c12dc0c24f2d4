package main

import (
	"runtime/debug"

	"github.com/dvrelay/dvrelay/internal/config"
)

// The garbage collector's settings for this process unless the operator set Go's own GOGC or
// GOMEMLIMIT. The intake's live heap is small (the events in flight, bounded by
// DVRELAY_MAX_INFLIGHT) while it allocates some 100 KB an event, so Go's default (collect when
// the heap doubles) ran about ten collections a second at 1,000 events/s, and their pauses and
// assists were a third of the intake's p99 latency (BENCHMARKS.md). Collecting when the heap has
// grown fivefold keeps the heap near 50 MB under that load; the soft limit makes the collector
// work harder before a hostile or unusual load could take the heap past it.
//
// The limit is what makes a large body cost no more memory than a small one: at 256 KB an event
// leaves a few times its size in garbage (the encoded event, the queue's and the worker's
// copies), and at fivefold growth 32 clients took the process to 180-250 MiB; with the limit
// here it stays under 100 MiB. The live heap under the default bounds (DVRELAY_MAX_BYTES_INFLIGHT
// of bodies, each read, parsed and encoded in pooled buffers) is some 30 MiB, so the limit binds
// only when garbage would otherwise pile up. Whoever raises DVRELAY_MAX_BYTES_INFLIGHT far past
// its default should raise GOMEMLIMIT with it.
const (
	gcPercent   = 400
	memoryLimit = 64 << 20 // bytes
)

// tuneGC applies gcPercent and memoryLimit where the environment does not set its own.
func tuneGC(lookup config.Lookup) {
	set := config.LoadGoRuntime(lookup)
	if !set.GCPercentSet {
		debug.SetGCPercent(gcPercent)
	}
	if !set.MemoryLimitSet {
		debug.SetMemoryLimit(memoryLimit)
	}
}
