package local

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"
)

// syncLevelOf writes a change with durability d and returns the PRAGMA synchronous level in
// force for the commit that carried it: 2 is FULL (fsynced before the caller hears of it), 1 is
// NORMAL.
func syncLevelOf(t *testing.T, q *Queue, d durability) int {
	t.Helper()
	var level int
	if err := q.write(context.Background(), d, func(ctx context.Context, tx *sql.Tx, _ int64) error {
		return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level)
	}); err != nil {
		t.Fatalf("write: %v", err)
	}
	return level
}

func TestWrite_fsyncs_publishes_and_leaves_locks_and_settlements_to_the_next_fsync(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})

	if got := syncLevelOf(t, q, survivesProcessCrash); got != 1 {
		t.Errorf("a batch of locks and settlements alone committed at synchronous=%d, want 1 (NORMAL: no fsync of its own)", got)
	}
	if got := syncLevelOf(t, q, survivesPowerLoss); got != 2 {
		t.Errorf("a publish after a NORMAL batch committed at synchronous=%d, want 2 (FULL)", got)
	}

	// One batch holding both kinds, in either order, commits as the publish needs.
	for _, kinds := range [][]durability{{survivesProcessCrash, survivesPowerLoss}, {survivesPowerLoss, survivesProcessCrash}} {
		levels := make([]int, len(kinds))
		var batch []*writeRequest
		for i, d := range kinds {
			batch = append(batch, &writeRequest{ctx: context.Background(), durability: d, done: make(chan error, 1),
				apply: func(ctx context.Context, tx *sql.Tx, _ int64) error {
					return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&levels[i])
				}})
		}
		errs, err := q.commitBatch(batch)
		if err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("commitBatch = %v, %v", errs, err)
		}
		if levels[0] != 2 || levels[1] != 2 {
			t.Errorf("a batch of %v committed at synchronous=%v, want 2 for both (FULL: the publish's promise)", kinds, levels)
		}
	}

	// A support tool's transaction on the same connection after a NORMAL batch.
	syncLevelOf(t, q, survivesProcessCrash)
	var tool int
	if err := q.inTx(context.Background(), survivesPowerLoss, func(tx *sql.Tx) error {
		return tx.QueryRow("PRAGMA synchronous").Scan(&tool)
	}); err != nil {
		t.Fatal(err)
	}
	if tool != 2 {
		t.Errorf("a support tool's transaction after a NORMAL batch ran at synchronous=%d, want 2 (FULL)", tool)
	}
}

// commitLog records the durability of each group commit, in order.
type commitLog struct {
	mu  sync.Mutex
	log []durability
}

func (c *commitLog) record(d durability) { c.mu.Lock(); c.log = append(c.log, d); c.mu.Unlock() }

func (c *commitLog) take() []durability {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.log
	c.log = nil
	return got
}

func TestQueue_fsyncs_before_a_publish_returns_and_not_for_a_receive_or_a_settlement(t *testing.T) {
	commits := &commitLog{}
	q := openTestQueue(t, t.TempDir(), Options{committed: commits.record})
	ctx := context.Background()

	mustPublish(t, q, msg("a"))
	mustPublish(t, q, msg("b"))
	if got := commits.take(); !slices.Equal(got, []durability{survivesPowerLoss, survivesPowerLoss}) {
		t.Errorf("two publishes committed as %v, want each fsynced (%v)", got, survivesPowerLoss)
	}
	got := mustReceive(t, q, 2)
	if err := q.Complete(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if err := q.Abandon(ctx, got[1]); err != nil {
		t.Fatal(err)
	}
	settled := commits.take()
	if len(settled) == 0 {
		t.Fatal("a receive, a complete and an abandon committed nothing")
	}
	for _, d := range settled {
		if d != survivesProcessCrash {
			t.Errorf("a receive or settlement commit was %v, want %v (no fsync of its own)", d, survivesProcessCrash)
		}
	}
	if err := q.DeadLetter(ctx, msg("c"), "Reason", "why"); err != nil {
		t.Fatal(err)
	}
	if got := commits.take(); !slices.Equal(got, []durability{survivesPowerLoss}) {
		t.Errorf("a direct dead-letter committed as %v, want it fsynced", got)
	}
}

func TestCommitSweep_commits_the_publishes_first_and_the_worker_s_changes_without_an_fsync(t *testing.T) {
	commits := &commitLog{}
	q := openTestQueue(t, t.TempDir(), Options{committed: commits.record})
	type applied struct {
		name  string
		level int
	}
	var order []applied
	change := func(name string, d durability) *writeRequest {
		return &writeRequest{ctx: context.Background(), durability: d, done: make(chan error, 1),
			apply: func(ctx context.Context, tx *sql.Tx, _ int64) error {
				a := applied{name: name}
				err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&a.level)
				order = append(order, a)
				return err
			}}
	}
	sweep := []*writeRequest{
		change("complete", survivesProcessCrash), change("publish 1", survivesPowerLoss),
		change("lock", survivesProcessCrash), change("publish 2", survivesPowerLoss),
	}
	q.commitSweep(slices.Clone(sweep), false)

	want := []applied{{"publish 1", 2}, {"publish 2", 2}, {"complete", 1}, {"lock", 1}}
	if !slices.Equal(order, want) {
		t.Errorf("a sweep was applied as %v, want %v: the publishes alone in an fsynced commit, then the rest", order, want)
	}
	if got := commits.take(); !slices.Equal(got, []durability{survivesPowerLoss, survivesProcessCrash}) {
		t.Errorf("a mixed sweep committed as %v, want an fsynced commit then one without", got)
	}
	for _, req := range sweep {
		if err := <-req.done; err != nil {
			t.Errorf("a change of the sweep was answered %v, want nil", err)
		}
	}
}

func TestPublish_forgets_message_ids_older_than_the_duplicate_window(t *testing.T) {
	clock := newManualClock()
	q := openTestQueue(t, t.TempDir(), Options{Now: clock.Now, DuplicateWindow: time.Minute})
	remembered := func() []string {
		t.Helper()
		return queryStrings(t, q.readers, `SELECT message_id FROM message_ids ORDER BY message_id`)
	}

	mustPublish(t, q, msg("old"))
	clock.Advance(2 * time.Minute)
	// The worker's commits alone leave the ids be; the next publish's commit forgets them.
	mustReceive(t, q, 1)
	if got := remembered(); !slices.Equal(got, []string{"old"}) {
		t.Errorf("after a receive, remembered ids = %v, want [old]", got)
	}
	mustPublish(t, q, msg("new"))
	if got := remembered(); !slices.Equal(got, []string{"new"}) {
		t.Errorf("after a publish past the window, remembered ids = %v, want [new]: the table must not grow forever", got)
	}
}
