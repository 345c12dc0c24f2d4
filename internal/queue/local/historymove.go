package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
)

// Up to schema version 2 the history lived in queue.db, written in the queue's own transactions.
// moveHistoryOut carries it over to history.db and then drops it from queue.db. It runs at every
// Open and does something only while queue.db still holds the history table, so a crash anywhere
// in it is finished by the next Open: the copy keeps each entry's id and skips the ids already
// there, and the counts are copied over, not added, so a second copy changes nothing.
func (q *Queue) moveHistoryOut(ctx context.Context) error {
	old, err := tablesIn(ctx, q.db, "history", "history_counts")
	if err != nil {
		return fmt.Errorf("move the history out of %s: %w", dbFileName, err)
	}
	if !old["history"] {
		return nil
	}
	if err := q.hist.copyFrom(ctx, filepath.Join(q.dir, dbFileName), old["history_counts"]); err != nil {
		return fmt.Errorf("move the history out of %s: %w", dbFileName, err)
	}
	err = q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		for _, stmt := range []string{
			`DROP TRIGGER IF EXISTS history_counted`,
			`DROP TABLE IF EXISTS history_counts`,
			`DROP TABLE IF EXISTS history`, // its indexes go with it
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move the history out of %s: drop it there: %w", dbFileName, err)
	}
	q.log.InfoContext(ctx, "moved the events' history to its own file", "dir", q.dir, "file", historyFileName)
	return nil
}

// tablesIn says which of names are tables in db.
func tablesIn(ctx context.Context, db *sql.DB, names ...string) (map[string]bool, error) {
	found := map[string]bool{}
	for _, name := range names {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
			return nil, fmt.Errorf("look for table %s: %w", name, err)
		}
		found[name] = n > 0
	}
	return found, nil
}

// copyFrom copies the history and, when the file has them, the per-minute counts of the queue
// file at path into the store, on the writer connection before the writer goroutine runs.
//
// The copy is committed with an fsync (synchronous=FULL for this one transaction): the drop
// that follows in queue.db is fsynced, and a power loss must not leave the entries in neither
// file. Counts are copied after the entries: the trigger counts each copied entry once more, and
// the copied counts then replace those sums with the originals, which also count the entries
// already pruned.
func (h *historyStore) copyFrom(ctx context.Context, path string, withCounts bool) (err error) {
	conn, err := h.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("take the history writer connection: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS old`, path); err != nil {
		return fmt.Errorf("attach %s: %w", path, err)
	}
	defer func() {
		_, detachErr := conn.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE old`)
		err = errors.Join(err, detachErr)
	}()
	if _, err := conn.ExecContext(ctx, `PRAGMA main.synchronous = FULL`); err != nil {
		return fmt.Errorf("set synchronous=FULL for the copy: %w", err)
	}
	defer func() {
		_, resetErr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA main.synchronous = NORMAL`)
		err = errors.Join(err, resetErr)
	}()
	return copyHistoryIn(ctx, conn, withCounts)
}

func copyHistoryIn(ctx context.Context, conn *sql.Conn, withCounts bool) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	const columns = `id, at, kind, event_id, message_id, record_id, correlation_id, entity, event_name,
		attempt, step, status, duration_ns, detail`
	stmts := []string{`INSERT OR IGNORE INTO main.history (` + columns + `) SELECT ` + columns + ` FROM old.history`}
	if withCounts {
		stmts = append(stmts, `INSERT OR REPLACE INTO main.history_counts (minute, kind, n)
			SELECT minute, kind, n FROM old.history_counts`)
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return errors.Join(fmt.Errorf("copy the history: %w", err), tx.Rollback())
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("copy the history: commit: %w", err)
	}
	return nil
}
