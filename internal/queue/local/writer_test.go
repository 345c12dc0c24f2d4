package local

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// A change that fails having written must undo its own writes and nothing of the others in its
// group commit; a settlement whose lock ran out drops out without disturbing them.
func TestCommitBatch_undoes_a_failed_change_alone(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), Options{})
	insert := func(name string, fail error) *writeRequest {
		return &writeRequest{ctx: context.Background(), durability: survivesProcessCrash, done: make(chan error, 1),
			apply: func(ctx context.Context, tx *sql.Tx, _ int64) error {
				if errors.Is(fail, queue.ErrLockLost) {
					return fail // before writing, as a settlement does
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO resubmits (base_message_id, count) VALUES (?, 1)`, name); err != nil {
					return err
				}
				return fail
			}}
	}
	boom := errors.New("boom")
	errs, err := q.commitBatch([]*writeRequest{
		insert("first", nil), insert("broken", boom), insert("lock-lost", queue.ErrLockLost), insert("last", nil),
	})
	if err != nil {
		t.Fatalf("commitBatch: %v", err)
	}
	if errs[0] != nil || !errors.Is(errs[1], boom) || !errors.Is(errs[2], queue.ErrLockLost) || errs[3] != nil {
		t.Fatalf("errs = %v, want nil, boom, ErrLockLost, nil", errs)
	}
	got := queryStrings(t, q.db, `SELECT base_message_id FROM resubmits ORDER BY base_message_id`)
	if len(got) != 2 || got[0] != "first" || got[1] != "last" {
		t.Fatalf("committed %v, want first and last: the broken change's write undone, no one else's", got)
	}
}

// queryStrings runs query, whose rows are one text column each, and returns them in order.
func queryStrings(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
