package local

import (
	"math"
	"slices"
)

// idIndex finds the rows of message_ids that may hold a message id, given the id's 64-bit hash,
// in 8 bytes an id: each entry keeps 32 bits of the hash (a fingerprint) and the row's offset
// within its bucket. A fingerprint can match another id (one lookup in about 4 billion / ids
// indexed), which is why every row it leads to is confirmed against the stored id.
//
// The ids are cut into buckets by the time they were first seen, so the window expires a bucket
// at a time. The newest bucket is an open-addressing table that takes inserts; once its span has
// passed it is sealed into a sorted array, found by its fingerprints' top bits. The entries hold
// no pointers, so the garbage collector never scans them; their bytes are reported through
// Options.Retained, so that a soft memory limit makes room for them.
type idIndex struct {
	span   int64 // ns a bucket covers
	sealed []sealedBucket
	open   openBucket
	// expiredUpTo is the highest row of a bucket dropped as expired.
	expiredUpTo int64
}

// bucketSpan is what every bucket knows of the ids it holds.
type bucketSpan struct {
	from, newest int64 // first_seen of its first and newest id
	baseSeq      int64 // its first row: entries hold offsets from it
	maxSeq       int64
}

type sealedBucket struct {
	bucketSpan
	entries []uint64 // fingerprint<<32 | offset+1, sorted
	// starts[p] is the first entry whose fingerprint's top bits are p (and starts[len-1] is
	// len(entries)): a lookup reads one slice of about eight entries rather than bisecting all.
	starts []uint32
	shift  uint // 32 minus the bits of a fingerprint starts is indexed by
}

type openBucket struct {
	bucketSpan
	slots []uint64 // fingerprint<<32 | offset+1, or 0 for an empty slot; len is a power of two
	n     int
}

const openBucketMinSlots = 1024

func newIDIndex(span int64) *idIndex { return &idIndex{span: max(span, 1)} }

func entryOf(fp uint32, off int64) uint64 { return uint64(fp)<<32 | uint64(off+1) }

// add indexes the id with hash h, written at row seq at time at.
func (x *idIndex) add(h uint64, seq, at int64) {
	o := &x.open
	if o.n > 0 && (at >= o.from+x.span || seq-o.baseSeq >= math.MaxUint32-1) {
		x.seal()
	}
	if o.n == 0 {
		if len(o.slots) == 0 {
			o.slots = make([]uint64, openBucketMinSlots)
		}
		o.bucketSpan = bucketSpan{from: at, newest: at, baseSeq: seq, maxSeq: seq}
	}
	if (o.n+1)*4 > len(o.slots)*3 {
		o.grow()
	}
	o.insert(entryOf(uint32(h), seq-o.baseSeq))
	o.n++
	o.newest, o.maxSeq = max(o.newest, at), max(o.maxSeq, seq)
}

func (o *openBucket) insert(e uint64) {
	mask := uint64(len(o.slots) - 1)
	for i := (e >> 32) & mask; ; i = (i + 1) & mask {
		if o.slots[i] == 0 {
			o.slots[i] = e
			return
		}
	}
}

func (o *openBucket) grow() {
	old := o.slots
	o.slots = make([]uint64, 2*len(old))
	for _, e := range old {
		if e != 0 {
			o.insert(e)
		}
	}
}

// seal turns the open bucket into a sorted array and empties it.
func (x *idIndex) seal() {
	o := &x.open
	entries := make([]uint64, 0, o.n)
	for _, e := range o.slots {
		if e != 0 {
			entries = append(entries, e)
		}
	}
	slices.Sort(entries)
	x.sealed = append(x.sealed, newSealedBucket(o.bucketSpan, entries))
	*o = openBucket{}
}

// newSealedBucket indexes sorted entries by their fingerprints' top bits, one start for about
// every eight entries (half a byte an id).
func newSealedBucket(span bucketSpan, entries []uint64) sealedBucket {
	bits := uint(0)
	for bits < 24 && len(entries)>>(bits+3) > 0 {
		bits++
	}
	b := sealedBucket{bucketSpan: span, entries: entries, starts: make([]uint32, 1<<bits+1), shift: 32 - bits}
	p := 0
	for i, e := range entries {
		for top := int(uint32(e>>32) >> b.shift); p <= top; p++ {
			b.starts[p] = uint32(i)
		}
	}
	for ; p < len(b.starts); p++ {
		b.starts[p] = uint32(len(entries))
	}
	return b
}

// rowsOf calls yield with each row an id with hash h may be in, newest bucket first, until it
// returns false.
func (x *idIndex) rowsOf(h uint64, yield func(seq int64) bool) {
	fp := uint64(uint32(h))
	if o := &x.open; o.n > 0 {
		mask := uint64(len(o.slots) - 1)
		for i := fp & mask; o.slots[i] != 0; i = (i + 1) & mask {
			if e := o.slots[i]; e>>32 == fp && !yield(o.baseSeq+int64(uint32(e))-1) {
				return
			}
		}
	}
	for i := len(x.sealed) - 1; i >= 0; i-- {
		b := &x.sealed[i]
		top := fp >> b.shift
		j := int(b.starts[top])
		for end := int(b.starts[top+1]); j < end && b.entries[j]>>32 < fp; j++ {
		}
		for ; j < len(b.entries) && b.entries[j]>>32 == fp; j++ {
			if !yield(b.baseSeq + int64(uint32(b.entries[j])) - 1) {
				return
			}
		}
	}
}

// expire drops the buckets whose every id was first seen at or before cutoff.
func (x *idIndex) expire(cutoff int64) {
	n := 0
	for n < len(x.sealed) && x.sealed[n].newest <= cutoff {
		x.expiredUpTo = max(x.expiredUpTo, x.sealed[n].maxSeq)
		n++
	}
	if n > 0 {
		clear(x.sealed[:n])
		x.sealed = append(x.sealed[:0], x.sealed[n:]...)
	}
	if len(x.sealed) == 0 && x.open.n > 0 && x.open.newest <= cutoff {
		x.expiredUpTo = max(x.expiredUpTo, x.open.maxSeq)
		x.open = openBucket{}
	}
}

// bytes is the memory the index holds.
func (x *idIndex) bytes() int64 {
	n := 8 * int64(cap(x.open.slots))
	for _, b := range x.sealed {
		n += 8*int64(cap(b.entries)) + 4*int64(cap(b.starts))
	}
	return n
}

// len is the number of ids indexed.
func (x *idIndex) len() int {
	n := x.open.n
	for _, b := range x.sealed {
		n += len(b.entries)
	}
	return n
}
