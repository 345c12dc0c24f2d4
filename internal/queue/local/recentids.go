package local

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"time"
)

// Duplicate detection remembers every message id published within the window. The ids are
// random (EventIds are GUIDs), so a table keyed on them is a B-tree that every publish writes at
// a random page, and the pruning of expired ids deletes at another. Once the window is full at a
// high rate that table holds millions of ids, and those pages, written to the log and again by
// each checkpoint, were two thirds of what the queue wrote: 155 KB an event against 53 without
// them (BENCHMARKS.md).
//
// So the ids are stored in the order they came, in message_ids, a table without an index whose
// pages the publishes of a commit share and whose pruning deletes from the front; the lookup runs
// on an index of the window held in memory (idindex.go), 8 bytes an id, that leads from a hash of
// the id to its row. Every row it leads to is confirmed against the stored id, so a collision
// never drops a message. Open loads the index from the table. Every change that remembers an id
// runs on the writer goroutine, which alone touches the index.
const (
	messageIDsSchema = `
CREATE TABLE IF NOT EXISTS message_ids (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- the order the ids came in; never reused, so
	                                              -- the index's expired rows stay below new ones
	message_id TEXT    NOT NULL,
	first_seen INTEGER NOT NULL                   -- unix ns
);`

	rememberIDSQL = `INSERT INTO message_ids (message_id, first_seen) VALUES (?, ?)`
	// confirmIDSQL tells whether the row a hash led to is the id, within the window.
	confirmIDSQL = `SELECT EXISTS (SELECT 1 FROM message_ids WHERE seq = ? AND message_id = ? AND first_seen > ?)`
	// forgetIDsSQL deletes expired ids from the front of the table, at most forgetChunk of them
	// a commit, so that a bucket expiring at a high rate does not hold up one commit for long.
	forgetIDsSQL = `DELETE FROM message_ids
		WHERE seq <= min(?1, (SELECT min(seq) FROM message_ids) + ?3) AND first_seen <= ?2`
	forgetChunk = 1024

	// idBuckets is how many buckets the window is cut into: an id lives in memory at most a
	// bucket's span past the window.
	idBuckets = 16
)

// recentIDs is the in-memory index of the message ids published within the duplicate window.
// Only the writer goroutine uses it (and Open, before the writer starts).
type recentIDs struct {
	seed maphash.Seed
	*idIndex
	// forgotten is the row up to which the table has been pruned, as far as the writer knows.
	forgotten int64
	// reported is the index's memory Options.Retained was last told.
	reported int64
}

// pendingID is an id a change of the batch being committed remembered: it joins recentIDs once
// the commit succeeds.
type pendingID struct {
	hash uint64
	seq  int64
	at   int64
}

func newRecentIDs(window time.Duration) *recentIDs {
	return &recentIDs{seed: maphash.MakeSeed(), idIndex: newIDIndex(window.Nanoseconds() / idBuckets)}
}

func (r *recentIDs) hash(id string) uint64 { return maphash.String(r.seed, id) }

// windowStart is the time (unix ns) at and before which an id first seen is outside the
// duplicate window that ends at now.
func (q *Queue) windowStart(now int64) int64 { return now - q.opts.DuplicateWindow.Nanoseconds() }

// remember records id for duplicate detection and reports whether it is new within the window:
// neither committed within the window nor remembered earlier in this batch.
func (q *Queue) remember(ctx context.Context, tx *sql.Tx, id string, now int64) (bool, error) {
	h := q.ids.hash(id)
	seen, err := q.seenSince(ctx, tx, id, h, q.windowStart(now))
	if err != nil {
		return false, fmt.Errorf("duplicate check %s: %w", id, err)
	}
	if seen {
		return false, nil
	}
	res, err := tx.StmtContext(ctx, q.stmts.remember).ExecContext(ctx, id, now)
	if err != nil {
		return false, fmt.Errorf("remember %s: %w", id, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return false, fmt.Errorf("remember %s: %w", id, err)
	}
	q.ws.ids = append(q.ws.ids, pendingID{hash: h, seq: seq, at: now})
	return true, nil
}

// seenSince reports whether id, whose hash is h, was first seen after cutoff: remembered earlier
// in this batch or committed. Every row its hash leads to is confirmed against the stored id.
func (q *Queue) seenSince(ctx context.Context, tx *sql.Tx, id string, h uint64, cutoff int64) (seen bool, err error) {
	confirm := func(seq int64) (more bool) {
		seen, err = q.confirmID(ctx, tx, seq, id, cutoff)
		return err == nil && !seen
	}
	for i := len(q.ws.ids) - 1; i >= 0; i-- {
		if p := q.ws.ids[i]; p.hash == h && !confirm(p.seq) {
			return seen, err
		}
	}
	q.ids.rowsOf(h, confirm)
	return seen, err
}

func (q *Queue) confirmID(ctx context.Context, tx *sql.Tx, seq int64, id string, cutoff int64) (bool, error) {
	var same bool
	err := tx.StmtContext(ctx, q.stmts.confirmID).QueryRowContext(ctx, seq, id, cutoff).Scan(&same)
	return same, err
}

// rollBackIDs forgets the ids remembered from mark on: their change was rolled back.
func (q *Queue) rollBackIDs(mark int) { q.ws.ids = q.ws.ids[:mark] }

// indexCommittedIDs adds the batch's ids to the index once their commit has succeeded; a failed
// commit wrote none of them.
func (q *Queue) indexCommittedIDs(err error) {
	if err == nil {
		for _, p := range q.ws.ids {
			q.ids.add(p.hash, p.seq, p.at)
		}
	}
	q.ws.ids = q.ws.ids[:0]
	q.reportRetained()
}

// reportRetained tells Options.Retained the index's memory when it has changed: when a bucket
// grew, was sealed or expired.
func (q *Queue) reportRetained() {
	if q.opts.Retained == nil {
		return
	}
	if n := q.ids.bytes(); n != q.ids.reported {
		q.ids.reported = n
		q.opts.Retained(n)
	}
}

// forgetExpiredIDs drops the expired buckets from the index and deletes their rows from the
// table's front, a chunk a commit. A commit that fails leaves its chunk in the table; the next
// expiry's delete, which starts at the table's front, takes it.
func (q *Queue) forgetExpiredIDs(ctx context.Context, tx *sql.Tx, now int64) error {
	cutoff := q.windowStart(now)
	q.ids.expire(cutoff) // reported with the batch's ids, in indexCommittedIDs
	if q.ids.expiredUpTo <= q.ids.forgotten {
		return nil
	}
	res, err := tx.StmtContext(ctx, q.stmts.forgetIDs).ExecContext(ctx, q.ids.expiredUpTo, cutoff, forgetChunk)
	if err != nil {
		return fmt.Errorf("forget old message ids: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("forget old message ids: %w", err)
	} else if n < forgetChunk {
		q.ids.forgotten = q.ids.expiredUpTo
	}
	return nil
}

// loadRecentIDs fills the index from the table at Open: the ids within the window are indexed,
// the rows of older ones are left to forgetExpiredIDs.
func (q *Queue) loadRecentIDs(ctx context.Context) error {
	q.ids = newRecentIDs(q.opts.DuplicateWindow)
	start := time.Now()
	cutoff := q.windowStart(q.nowNS())
	rows, err := q.db.QueryContext(ctx, `SELECT seq, message_id, first_seen FROM message_ids ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("load message ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq, at int64
			id      string
		)
		if err := rows.Scan(&seq, &id, &at); err != nil {
			return fmt.Errorf("load message ids: %w", err)
		}
		if at <= cutoff {
			q.ids.expiredUpTo = max(q.ids.expiredUpTo, seq)
			continue
		}
		q.ids.add(q.ids.hash(id), seq, at)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load message ids: %w", err)
	}
	q.reportRetained()
	if n := q.ids.len(); n > 0 {
		q.log.Info("loaded the message ids of the duplicate window", "ids", n, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}
