package local

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
)

// readConns is the size of the read pool: the receive loop's look-ahead, health checks and
// support tools rarely read at once, and each connection keeps its own page cache.
const readConns = 4

// openReaders opens the read pool on the database file the writer has already set up in WAL
// mode. In WAL mode a reader sees the last committed transaction without waiting for the
// writer, so health checks and the receive loop's "what is due next" never queue behind a group
// commit. query_only makes any write attempted on these connections an error: every write goes
// through the single writer connection.
func openReaders(path string) (*sql.DB, error) {
	db, err := openPool(path, readConns, "busy_timeout(5000)", "query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("open read pool: %w", err)
	}
	return db, nil
}

// openPool opens conns connections to the database file at path, each set up with pragmas, kept
// open for the queue's life: a connection's page cache and prepared statements are worth keeping.
// A pragma "_txlock=<mode>" sets how the pool's transactions begin instead.
func openPool(path string, conns int, pragmas ...string) (*sql.DB, error) {
	params := url.Values{}
	for _, p := range pragmas {
		if mode, ok := strings.CutPrefix(p, "_txlock="); ok {
			params.Set("_txlock", mode)
			continue
		}
		params.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// read runs fn on the read pool and returns its result when fn does or ctx.Err() when ctx ends,
// whichever is first. SQLite stops a statement when its ctx ends, but not a read stuck in the
// kernel (a stalled disk), so fn runs on its own goroutine and is left to finish on its own: a
// caller with a deadline, such as a health check, always gets its answer in time. Such a
// straggler holds one pool connection until the disk answers; later reads wait for a free
// connection within their own ctx.
func read[T any](ctx context.Context, q *Queue, fn func(ctx context.Context, db *sql.DB) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // buffered: a straggler never blocks on a caller that has gone
	go func() {
		if q.opts.beforeRead != nil {
			q.opts.beforeRead()
		}
		v, err := fn(ctx, q.readers)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && ctx.Err() != nil {
			return zero, ctx.Err() // SQLite's "interrupted" says less than why it was
		}
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
