package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue/local"
)

// runWindow fills a data dir's duplicate window as hours of traffic at a high rate would leave
// it: -ids message ids first seen over the last -over, so a benchmark on that dir measures the
// queue in its steady state rather than fresh. It writes the rows straight into the queue's
// table (the embedded queue's layout of schema version 3), which is why it is a tool and not a
// feature: the queue itself takes ids only from publishes.
func runWindow(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("window", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the data dir (`handler serve --data-dir`); created if missing")
	ids := fs.Int("ids", 2_500_000, "how many message ids to remember")
	over := fs.Duration("over", 100*time.Second, "the ids are first seen over this span, ending now; keep it well inside the window (10m)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *ids < 1 || *over <= 0 {
		return errors.New("usage: loadgen window -dir DIR [-ids N] [-over 100s]")
	}
	ctx := context.Background()
	start := time.Now()
	q, err := local.Open(ctx, *dir, local.Options{}, slog.New(slog.DiscardHandler)) // creates the layout
	if err != nil {
		return err
	}
	if err := q.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(*dir, "queue.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now().UnixNano()
	step := over.Nanoseconds() / int64(*ids)
	// GUID-shaped random ids, the way EventIds are, first seen from now-over to now.
	_, err = db.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO message_ids (message_id, first_seen)
		SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' ||
			hex(randomblob(2)) || '-' || hex(randomblob(6))), ?2 + i * ?3 FROM n`,
		*ids, now-over.Nanoseconds(), step)
	if err != nil {
		return fmt.Errorf("fill message_ids: %w", err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d message ids over the last %s (%s)\n", *dir, *ids, *over, time.Since(start).Round(time.Millisecond))
	return nil
}
