package local

import (
	"context"
	"database/sql"
	"fmt"
)

// durability is what a committed change survives by the time its caller is told it landed.
//
// SQLite decides it per commit with PRAGMA synchronous: in WAL mode FULL fsyncs the log at
// every commit; NORMAL appends the commit to the log (so the OS has it) and leaves the fsync to
// the next FULL commit or checkpoint. A later fsync covers every frame written before it, and
// recovery after a power loss replays the log up to the last commit it holds whole, so what
// survives is always a prefix of the commits in order: never a settlement without the publish
// it settles.
type durability int

const (
	// survivesPowerLoss: fsynced before the caller is answered (synchronous=FULL). A Publish
	// (the intake answers 202 on it), a direct dead-letter and every support tool's change.
	survivesPowerLoss durability = iota
	// survivesProcessCrash: in the log but not yet fsynced (synchronous=NORMAL). A kill -9 or
	// a panic keeps it; a power loss or an OS crash before the next fsync (the next publish's,
	// or a checkpoint's) can undo it. Receive locks and settlements
	// are this: undoing one delivers the message again, as a lost lock would, which
	// at-least-once delivery already allows, and an fsync each would cost the worker as much
	// as the intake's publishes (an fsync is about ten times the rest of a commit).
	survivesProcessCrash
)

// pragma is the PRAGMA synchronous level that gives d.
func (d durability) pragma() string {
	if d == survivesProcessCrash {
		return "NORMAL"
	}
	return "FULL"
}

func (d durability) String() string { return "synchronous=" + d.pragma() }

// strongest is the durability a commit of changes wanting a and b must have.
func strongest(a, b durability) durability { return min(a, b) }

// inTx runs fn in a write transaction (BEGIN IMMEDIATE) on the single writer connection and
// commits it with durability d.
//
// SQLite refuses to change synchronous inside a transaction, so the level is set on the
// connection before BEGIN, with the connection held (db.Conn) so no one else's transaction
// slips in between. q.connLevel remembers the level last set: the pool has one connection, so
// only the holder of it reads or writes the field. Should database/sql replace a broken
// connection, the new one opens at FULL (openDB's DSN): the field may then claim NORMAL where
// the connection is FULL, never the reverse, which costs an fsync and loses nothing.
func (q *Queue) inTx(ctx context.Context, d durability, fn func(tx *sql.Tx) error) error {
	conn, err := q.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("take the writer connection: %w", err)
	}
	defer conn.Close()
	if q.connLevel != d {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = "+d.pragma()); err != nil {
			return fmt.Errorf("set synchronous=%s: %w", d.pragma(), err)
		}
		q.connLevel = d
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
