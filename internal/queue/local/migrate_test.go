package local

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// A data directory written before per-record order keeps its messages, and the first receive
// after the upgrade already keeps each record's order: keys come from the stored events.
func TestOpen_gives_messages_of_an_earlier_schema_their_records_order(t *testing.T) {
	dir := t.TempDir()
	db := createSchemaV1(t, dir)
	ctx := context.Background()
	for i, body := range []string{
		`{"EventId":"e1","Entity":"account","RecordId":"ABC"}`,
		`{"EventId":"e2","Entity":"account","RecordId":"abc"}`,
		`{"EventId":"e3","Entity":"contact","RecordId":"abc"}`,
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO messages
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at)
			VALUES (?, '', '', '', 'application/json', ?, '{}', ?, ?)`, "e"+string(rune('1'+i)), body, i+1, i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	q := openTestQueue(t, dir, Options{})
	got := mustReceive(t, q, 10)
	if len(got) != 2 || got[0].MessageID != "e1" || got[1].MessageID != "e3" {
		t.Fatalf("first receive after the upgrade = %v, want e1 and e3 (e2 waits behind e1, the same account)", receivedIDs(got))
	}
	if err := q.Complete(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	if next := mustReceive(t, q, 10); len(next) != 1 || next[0].MessageID != "e2" {
		t.Fatalf("after e1 completed got %v, want e2", receivedIDs(next))
	}
}

// createSchemaV1 creates a data directory's file in schema version 1, the oldest layout Open
// upgrades, and returns it open for the test to fill; the test closes it before Open.
func createSchemaV1(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), schemaV1+`PRAGMA user_version = 1;`); err != nil {
		t.Fatal(err)
	}
	return db
}

func receivedIDs(rs []*queue.Received) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.MessageID)
	}
	return out
}

// schemaV1 is the layout of schema version 1, as data directories written before order keys hold it.
const schemaV1 = `
CREATE TABLE IF NOT EXISTS messages (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id     TEXT    NOT NULL,
	correlation_id TEXT    NOT NULL,
	subject        TEXT    NOT NULL,
	session_id     TEXT    NOT NULL,
	content_type   TEXT    NOT NULL,
	body           BLOB    NOT NULL,
	props          TEXT    NOT NULL, -- application properties, JSON object
	enqueued_at    INTEGER NOT NULL, -- unix ns
	due_at         INTEGER NOT NULL, -- unix ns: enqueue time, or the scheduled time
	delivery_count INTEGER NOT NULL DEFAULT 0,
	lock_token     TEXT,
	locked_until   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (due_at, seq);
-- messages_ready holds the unlocked messages alone, so a Receive finds the next one at the
-- index's front rather than stepping over (and reading the row of) every message held locked.
CREATE INDEX IF NOT EXISTS messages_ready ON messages (due_at, seq) WHERE lock_token IS NULL;
CREATE INDEX IF NOT EXISTS messages_locked ON messages (locked_until) WHERE lock_token IS NOT NULL;

CREATE TABLE IF NOT EXISTS dead_letters (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id       TEXT    NOT NULL,
	correlation_id   TEXT    NOT NULL,
	subject          TEXT    NOT NULL,
	session_id       TEXT    NOT NULL,
	content_type     TEXT    NOT NULL,
	body             BLOB    NOT NULL,
	props            TEXT    NOT NULL,
	enqueued_at      INTEGER NOT NULL,
	delivery_count   INTEGER NOT NULL,
	reason           TEXT    NOT NULL,
	description      TEXT    NOT NULL,
	dead_lettered_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS duplicates (
	message_id TEXT    PRIMARY KEY,
	first_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS duplicates_first_seen ON duplicates (first_seen);

CREATE TABLE IF NOT EXISTS resubmits (
	base_message_id TEXT    PRIMARY KEY,
	count           INTEGER NOT NULL
) WITHOUT ROWID;
`
