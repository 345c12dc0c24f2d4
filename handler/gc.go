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
const (
	gcPercent   = 400
	memoryLimit = 256 << 20 // bytes
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
