package main

import (
	"runtime/debug"
	"sync"

	"github.com/dvrelay/dvrelay/internal/config"
)

// The garbage collector's settings for this process unless the operator set Go's own GOGC or
// GOMEMLIMIT. The intake's live heap is small (the events in flight, bounded by
// DVRELAY_MAX_INFLIGHT) while it allocates a lot for each event, so Go's default (collect when
// the heap doubles) collects many times a second under load, and the pauses and assists show in
// the intake's tail latency (docs/limits.md; the measurements are in BENCHMARKS.md's history).
// Collecting when the heap has grown fivefold makes collections rare while the heap stays small;
// the soft limit makes the collector work harder before a hostile or unusual load could take the
// heap past it.
//
// The limit is also what makes a large body cost no more memory than a small one: at 256 KB an
// event leaves a few times its size in garbage (the encoded event, the queue's and the worker's
// copies), and at fivefold growth alone 32 clients took the process well past 100 MiB. The live
// heap under the default bounds (DVRELAY_MAX_BYTES_IN_FLIGHT of bodies, each read, parsed and
// encoded in pooled buffers) is far below the limit, so it binds only when garbage would
// otherwise pile up. Whoever raises DVRELAY_MAX_BYTES_IN_FLIGHT far past its default should raise
// GOMEMLIMIT with it.
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

// retainedMemory raises the soft limit tuneGC set by the memory the embedded queue keeps alive
// for as long as it runs (its duplicate window's index: about 9 bytes an id, 23 MB for 2.5
// million). The limit is a budget for garbage; live data past it would keep the collector
// running without pause (a window of 8 million ids took the closed loop from 4,400 to 1,700
// events/s). A limit the operator set (GOMEMLIMIT), or none, is left as it is: theirs to size.
type retainedMemory struct {
	mu       sync.Mutex
	retained int64
}

// set is local.Options.Retained: bytes is all the queue now keeps.
func (r *retainedMemory) set(bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if debug.SetMemoryLimit(-1) != memoryLimit+r.retained {
		return // not the limit tuneGC set
	}
	r.retained = bytes
	debug.SetMemoryLimit(memoryLimit + bytes)
}
