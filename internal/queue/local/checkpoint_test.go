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
	// Enough bodies to pass checkpointAfterBytes.
	body := make([]byte, 64<<10)
	published := 0
	for logged := int64(0); logged < checkpointAfterBytes; logged += int64(len(body)) {
		m := msg(fmt.Sprintf("m%d", published))
		m.Body = body
		mustPublish(t, q, m)
		published++
	}
	select {
	case n := <-copied:
		if n == 0 {
			t.Errorf("the background checkpoint copied no page after %d publishes", published)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no background checkpoint after %d publishes", published)
	}
	// And the queue reads what it wrote, from the database file as from the log.
	if s, err := q.Stats(context.Background()); err != nil || s.Queued != published {
		t.Fatalf("Stats = %+v, %v; want %d queued", s, err, published)
	}
}
