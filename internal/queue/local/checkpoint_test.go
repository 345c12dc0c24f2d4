package local

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The log is copied back into the database beside the writer: after enough commits a background
// checkpoint runs and copies pages, while the writer's own automatic checkpoint waits for a far
// larger log.
func TestCheckpoints_run_beside_the_writer(t *testing.T) {
	copied := make(chan int, 16)
	q := openTestQueue(t, t.TempDir(), Options{checkpointed: func(_, n int) {
		select {
		case copied <- n:
		default:
		}
	}})
	var auto int
	if err := q.db.QueryRow("PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != walFallbackPages {
		t.Errorf("the writer's own checkpoint runs every %d pages, want %d (the background one does the work)", auto, walFallbackPages)
	}
	for i := range checkpointAfterCommits {
		mustPublish(t, q, msg(fmt.Sprintf("m%d", i)))
	}
	select {
	case n := <-copied:
		if n == 0 {
			t.Errorf("the background checkpoint copied no page after %d commits", checkpointAfterCommits)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no background checkpoint after %d commits", checkpointAfterCommits)
	}
	// And the queue reads what it wrote, from the database file as from the log.
	if s, err := q.Stats(context.Background()); err != nil || s.Queued != checkpointAfterCommits {
		t.Fatalf("Stats = %+v, %v; want %d queued", s, err, checkpointAfterCommits)
	}
}
