package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func mustPublishReporting(t *testing.T, q *Queue, id string) (duplicate bool) {
	t.Helper()
	duplicate, err := q.PublishReporting(context.Background(), msg(id))
	if err != nil {
		t.Fatalf("Publish %s: %v", id, err)
	}
	return duplicate
}

func countRows(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// The window's ids live in memory, loaded from the file at Open: a restart must not forget them.
func TestPublish_drops_a_duplicate_of_a_message_published_before_a_restart(t *testing.T) {
	dir := t.TempDir()
	clock := newManualClock()
	opts := Options{Now: clock.Now, DuplicateWindow: 10 * time.Minute}
	q := openTestQueue(t, dir, opts)
	mustPublishReporting(t, q, "before")
	clock.Advance(9 * time.Minute)
	mustPublishReporting(t, q, "later")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openTestQueue(t, dir, opts)
	if !mustPublishReporting(t, q, "before") {
		t.Error("a re-post 9 minutes after the first, across a restart, was queued again; want it dropped as a duplicate")
	}
	clock.Advance(2 * time.Minute) // "before" is now 11 minutes old, "later" 2
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openTestQueue(t, dir, opts)
	if mustPublishReporting(t, q, "before") {
		t.Error("a re-post past the window, across a restart, was dropped; want it queued")
	}
	if !mustPublishReporting(t, q, "later") {
		t.Error("a re-post within the window, across a second restart, was queued again; want it dropped")
	}
}

// Two ids whose hashes collide must both be queued: a hash found in the index is only a lead,
// confirmed against the stored id.
func TestPublish_queues_an_id_whose_hash_leads_to_another_id(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	mustPublishReporting(t, q, "first")
	// Point the hash of "second" at the row of "first", as a collision would. The writer is idle
	// between publishes, and its answer to the last one ordered its index before this.
	var first int64
	q.ids.rowsOf(q.ids.hash("first"), func(seq int64) bool { first = seq; return false })
	if first == 0 {
		t.Fatal("first is not in the index")
	}
	q.ids.add(q.ids.hash("second"), first, q.nowNS())
	if mustPublishReporting(t, q, "second") {
		t.Fatal("an id whose hash led to another id's row was dropped as a duplicate; want it queued")
	}
	if !mustPublishReporting(t, q, "second") {
		t.Error("the second post of an id was queued; want it dropped")
	}
}

// A change rolled back (here: it failed after remembering its id) wrote nothing, so its id must
// not make a later publish of the same id a duplicate, in the same batch or after it.
func TestPublish_does_not_remember_the_id_of_a_change_that_was_rolled_back(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	failing := errors.New("the change fails after it remembered its id")
	req := func(apply func(ctx context.Context, tx *sql.Tx, now int64) error) *writeRequest {
		return &writeRequest{ctx: context.Background(), durability: survivesPowerLoss, apply: apply, done: make(chan error, 1)}
	}
	var freshInBatch bool
	batch := []*writeRequest{
		req(func(ctx context.Context, tx *sql.Tx, now int64) error {
			if _, err := q.remember(ctx, tx, "rolled-back", now); err != nil {
				return err
			}
			return failing
		}),
		req(func(ctx context.Context, tx *sql.Tx, now int64) error {
			var err error
			freshInBatch, err = q.remember(ctx, tx, "rolled-back", now)
			return err
		}),
	}
	// The writer is idle: the sweep runs here as the writer would run it, both changes in one
	// commit.
	q.commitSweep(batch, false)
	if err := <-batch[0].done; !errors.Is(err, failing) {
		t.Fatalf("the failing change was answered %v, want its own error", err)
	}
	if err := <-batch[1].done; err != nil {
		t.Fatalf("the second change was answered %v", err)
	}
	if !freshInBatch {
		t.Error("an id whose first change was rolled back was a duplicate in the same batch; want it new")
	}
	if n := countRows(t, q.readers, `SELECT count(*) FROM message_ids WHERE message_id = 'rolled-back'`); n != 1 {
		t.Errorf("message_ids holds %d rows of the id, want 1 (the second change's)", n)
	}
}

// The table behind the window is pruned from its front, a chunk a commit, until every expired
// id is gone; the ids still within the window stay found.
func TestPublish_prunes_every_expired_id_and_keeps_the_window(t *testing.T) {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, DuplicateWindow: time.Minute})
	const old = 2*forgetChunk + 100
	var wg sync.WaitGroup
	for i := range old {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustPublishReporting(t, q, fmt.Sprintf("old-%d", i))
		}()
	}
	wg.Wait()
	clock.Advance(45 * time.Second)
	mustPublishReporting(t, q, "recent")
	clock.Advance(30 * time.Second) // the old ids are 75 s old, "recent" 30 s

	for i := range 5 {
		mustPublishReporting(t, q, fmt.Sprintf("new-%d", i))
	}
	if n := countRows(t, q.readers, `SELECT count(*) FROM message_ids WHERE message_id LIKE 'old-%'`); n != 0 {
		t.Errorf("after five publishes past the window, %d of %d expired ids are still stored, want 0", n, old)
	}
	if !mustPublishReporting(t, q, "recent") {
		t.Error("an id 30 s old in a 1-minute window was queued again after the pruning; want it dropped")
	}
	if mustPublishReporting(t, q, "old-7") {
		t.Error("an id 75 s old in a 1-minute window was dropped; want it queued")
	}
}

// Schema versions 1 and 2 kept the window's ids in a table keyed on the id; Open moves them (here
// from version 1, which also takes the upgrade to order keys), so a re-post within the window is
// still dropped after the upgrade.
func TestOpen_keeps_the_duplicate_window_of_an_earlier_schema(t *testing.T) {
	dir := t.TempDir()
	clock := newManualClock()
	db := createSchemaV1(t, dir)
	ctx := context.Background()
	now := clock.Now().UnixNano()
	if _, err := db.ExecContext(ctx, `INSERT INTO duplicates (message_id, first_seen) VALUES ('seen', ?), ('expired', ?)`,
		now-int64(time.Minute), now-int64(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	q := openTestQueue(t, dir, Options{Now: clock.Now})
	if !mustPublishReporting(t, q, "seen") {
		t.Error("an id published a minute before the upgrade was queued again; want it dropped as a duplicate")
	}
	if mustPublishReporting(t, q, "expired") {
		t.Error("an id published an hour before the upgrade was dropped; want it queued")
	}
	if n := countRows(t, q.readers, `SELECT count(*) FROM sqlite_master WHERE name = 'duplicates'`); n != 0 {
		t.Error("the old duplicates table is still there after the upgrade")
	}
	if n := countRows(t, q.readers, `PRAGMA freelist_count`); n != 0 {
		t.Errorf("%d pages free after the upgrade, want 0: the file is compacted once the old table is dropped", n)
	}
}

// A resubmission takes a new id, remembered as a publish's is, while publishes go on.
func TestResubmit_remembers_the_new_id_while_publishes_go_on(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	ctx := context.Background()
	if err := q.DeadLetter(ctx, msg("parked"), "InvalidMessage", "test"); err != nil {
		t.Fatal(err)
	}
	parked, err := q.ListDeadLetters(ctx, 1)
	if err != nil || len(parked) != 1 {
		t.Fatalf("dead letters = %v, %v", parked, err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustPublishReporting(t, q, fmt.Sprintf("busy-%d", i))
		}()
	}
	newID, err := q.Resubmit(ctx, parked[0].SequenceNumber)
	wg.Wait()
	if err != nil {
		t.Fatalf("Resubmit: %v", err)
	}
	if !mustPublishReporting(t, q, newID) {
		t.Errorf("a publish of the resubmitted id %s was queued; want it dropped as a duplicate", newID)
	}
}

// The index's memory is reported as it grows and as expired buckets go, so that the process
// can make room for it under its soft memory limit.
func TestOpen_reports_the_memory_the_duplicate_window_keeps(t *testing.T) {
	clock := newManualClock()
	var (
		mu       sync.Mutex
		reported []int64
	)
	last := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if len(reported) == 0 {
			return -1
		}
		return reported[len(reported)-1]
	}
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, DuplicateWindow: time.Minute,
		Retained: func(n int64) { mu.Lock(); reported = append(reported, n); mu.Unlock() }})
	mustPublishReporting(t, q, "a")
	if got := last(); got < 8*openBucketMinSlots {
		t.Fatalf("after the first publish the queue reported %d bytes kept, want at least the open bucket's %d", got, 8*openBucketMinSlots)
	}
	for i := range 3 * openBucketMinSlots {
		mustPublishReporting(t, q, fmt.Sprintf("id-%d", i))
	}
	grown := last()
	if grown < 8*3*openBucketMinSlots {
		t.Fatalf("with %d ids the queue reported %d bytes kept, want at least 8 an id", 3*openBucketMinSlots, grown)
	}
	clock.Advance(2 * time.Minute)
	mustPublishReporting(t, q, "after")
	if got := last(); got >= grown {
		t.Errorf("after the window passed the queue reported %d bytes kept, want less than the %d before", got, grown)
	}
}
