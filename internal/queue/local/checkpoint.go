package local

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Checkpoints off the writer's path.
//
// In WAL mode every commit appends the pages it changed to the log, and a checkpoint copies the
// latest version of each logged page back into the database file and fsyncs it. Left to itself,
// SQLite runs one in the committing connection every 1,000 logged pages: on the group-commit
// writer, where at saturation it took an eighth of the process's CPU while every publish waited
// behind it. The checkpointer runs them on a connection and a goroutine of its own instead, while
// the writer goes on committing: a PASSIVE checkpoint copies what the log holds without waiting
// for the writer or for readers, and SQLite lets it run beside a writer.
//
// The writer keeps SQLite's own checkpoint, at a far larger log (walFallbackPages), as the bound
// on the log's size: a checkpoint beside a busy writer copies the log only up to the commit that
// was last when it began, so under steady writes the log is never copied whole and never starts
// over from its beginning. The writer's own checkpoint, when that size comes, finds nearly every
// page copied already, and the log starts over.
const (
	// checkpointAfterBytes is about how much the writer logs before it asks for a checkpoint,
	// estimated from what it commits (see loggedBy): at a trickle the log stays small and costs
	// nothing, and a checkpoint (two fsyncs) is not paid per event. Small, so each checkpoint's
	// fsync of the database file is short: at 4 MiB one of them held the log's fsync, and with
	// it the publishes, for 180 ms once in a 3-minute run at 500 events/s.
	checkpointAfterBytes = 1 << 20
	// checkpointInterval is the least time between two checkpoints: pages changed again and
	// again (the queue's heads, the history's newest) are copied once per checkpoint, not once
	// per change.
	checkpointInterval = 25 * time.Millisecond
	// walFallbackPages is the writer's own automatic checkpoint, in logged pages: about 40 MiB
	// with 4 KiB pages.
	walFallbackPages = 10000
)

// loggedBy estimates what a commit adds to the log: the pages every commit rewrites (the
// tables' and indexes' newest), a few index pages per change, and the bodies it inserts.
func loggedBy(changes int, bodies int64) int64 {
	const perCommit, perChange = 16 << 10, 2 << 10
	return perCommit + perChange*int64(changes) + bodies
}

// checkpointer runs the background checkpoints. The writer goroutine alone touches logged.
type checkpointer struct {
	db     *sql.DB
	kick   chan struct{} // buffered (1): the writer never waits to ask
	done   chan struct{}
	logged int64 // estimated bytes logged since the last ask
}

// openCheckpointer opens the checkpointer's connection on the database file the writer has set up.
func openCheckpointer(path string) (*checkpointer, error) {
	db, err := openPool(path, 1, "busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("open checkpoint connection: %w", err)
	}
	return &checkpointer{db: db, kick: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// committed counts what a commit of the writer logged (loggedBy) and asks for a checkpoint every
// checkpointAfterBytes.
func (c *checkpointer) committed(logged int64) {
	c.logged += logged
	if c.logged < checkpointAfterBytes {
		return
	}
	c.logged = 0
	select {
	case c.kick <- struct{}{}:
	default: // one is asked for already
	}
}

// run checkpoints when asked, at most every checkpointInterval, until closing is closed.
func (q *Queue) runCheckpoints(closing <-chan struct{}) {
	c := q.ckpt
	defer close(c.done)
	for {
		select {
		case <-closing:
			return
		case <-c.kick:
		}
		var busy, logged, copied int
		err := c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &copied)
		if err != nil {
			// The writer's own checkpoint still bounds the log; say so once per failure.
			q.log.Warn("queue: background checkpoint failed; the writer's own checkpoint bounds the log",
				"error", err)
		} else if q.opts.checkpointed != nil {
			q.opts.checkpointed(logged, copied)
		}
		select {
		case <-closing:
			return
		case <-time.After(checkpointInterval):
		}
	}
}

// close waits for the checkpoint loop to stop (closing must be closed) and closes its connection.
func (c *checkpointer) close() error {
	<-c.done
	return c.db.Close()
}
