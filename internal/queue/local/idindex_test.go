package local

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

func rowsFound(x *idIndex, h uint64) []int64 {
	var rows []int64
	x.rowsOf(h, func(seq int64) bool { rows = append(rows, seq); return true })
	return rows
}

// Every id added is found at its row, in the open bucket and after it was sealed, through
// growth, fingerprints shared by many ids, and expiry of the older buckets.
func TestIDIndex_finds_every_row_until_its_bucket_expires(t *testing.T) {
	const span, perBucket = 1000, 5000
	x := newIDIndex(span)
	rng := rand.New(rand.NewPCG(1, 2))
	type id struct {
		h       uint64
		seq, at int64
	}
	var ids []id
	seq := int64(100)
	for bucket := range int64(4) {
		for i := range int64(perBucket) {
			h := rng.Uint64()
			if i%10 == 0 {
				h = uint64(7) | h&^0xffffffff // many ids share one fingerprint
			}
			seq++
			it := id{h: h, seq: seq, at: bucket*span + i*span/perBucket}
			x.add(it.h, it.seq, it.at)
			ids = append(ids, it)
		}
	}
	if len(x.sealed) != 3 || x.open.n != perBucket {
		t.Fatalf("index has %d sealed buckets and %d open ids, want 3 and %d", len(x.sealed), x.open.n, perBucket)
	}
	for _, it := range ids {
		if !slices.Contains(rowsFound(x, it.h), it.seq) {
			t.Fatalf("id at row %d (time %d) not found", it.seq, it.at)
		}
	}
	if rows := rowsFound(x, uint64(7)); len(rows) != 4*perBucket/10 {
		t.Errorf("a fingerprint shared by %d ids led to %d rows", 4*perBucket/10, len(rows))
	}

	x.expire(2*span - 1) // the first two buckets end before this
	if x.len() != 2*perBucket {
		t.Errorf("after expiring two buckets the index holds %d ids, want %d", x.len(), 2*perBucket)
	}
	if want := ids[2*perBucket-1].seq; x.expiredUpTo != want {
		t.Errorf("expiredUpTo = %d, want %d (the last row of the second bucket)", x.expiredUpTo, want)
	}
	for i, it := range ids {
		found := slices.Contains(rowsFound(x, it.h), it.seq)
		if i >= 2*perBucket && !found {
			t.Fatalf("id at row %d of a live bucket not found after expiry", it.seq)
		}
	}
	x.expire(4 * span)
	if x.len() != 0 || x.expiredUpTo != seq {
		t.Errorf("after expiring everything: %d ids, expiredUpTo %d; want 0 and %d", x.len(), x.expiredUpTo, seq)
	}
	x.add(42, seq+1, 5*span)
	if rows := rowsFound(x, 42); !slices.Equal(rows, []int64{seq + 1}) {
		t.Errorf("an id added after everything expired led to %v, want [%d]", rows, seq+1)
	}
}

// BenchmarkIDIndex prices a lookup of a fresh id in a full window of a million ids (16 buckets,
// the newest one open), and reports the index's memory per id.
func BenchmarkIDIndex(b *testing.B) {
	const ids, span = 1_000_000, 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newIDIndex(span)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range int64(ids) {
		x.add(rng.Uint64(), 1+i, i*16*span/ids)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perID := float64(after.HeapAlloc-before.HeapAlloc) / ids
	found := 0
	b.ResetTimer()
	for b.Loop() {
		x.rowsOf(rng.Uint64(), func(int64) bool { found++; return false })
	}
	b.ReportMetric(perID, "B/id")
	runtime.KeepAlive(x)
}
