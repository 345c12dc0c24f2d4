package local

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// A data directory written before per-record order keeps its messages, and the first receive
// after the upgrade already keeps each record's order: keys come from the stored events.
func TestOpen_gives_messages_of_an_earlier_schema_their_records_order(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, schemaV1+`PRAGMA user_version = 1;`); err != nil {
		t.Fatal(err)
	}
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

// A data directory of schema version 2 kept the history in queue.db. Open moves it to
// history.db: support finds the same entries and charts afterwards, with the same ids, and a
// second Open (or one after a crash between the copy and the drop) copies nothing twice.
func TestOpen_moves_the_history_of_an_earlier_schema_to_its_own_file(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	writeV2History(t, dir, base)
	clock := newManualClock()
	opts := Options{Now: clock.Now}

	want := historyOf(t, openTestQueue(t, dir, opts), base)
	if len(want.entries) != 3 || want.entries[0].Kind != queue.HistAccepted || want.entries[2].Kind != queue.HistCompleted {
		t.Fatalf("history after the move = %+v, want accepted, retrying, completed", want.entries)
	}
	if got := want.activity.Total(queue.HistAccepted); got != 7 {
		t.Errorf("accepted in the charts = %d, want the 7 queue.db counted (5 of them pruned since)", got)
	}
	if got := want.activity.Total(queue.HistCompleted); got != 1 {
		t.Errorf("completed in the charts = %d, want 1", got)
	}
	for _, table := range []string{"history", "history_counts"} {
		if has := tablesInFile(t, filepath.Join(dir, dbFileName))[table]; has {
			t.Errorf("%s still holds table %s", dbFileName, table)
		}
	}
	if ids := historyIDs(t, dir); ids != "10,11,12,13" {
		t.Errorf("ids in %s = %s, want those of queue.db, 10 to 13", historyFileName, ids)
	}

	// Opened again: nothing left to move.
	if got := historyOf(t, reopen(t, dir, opts), base); !reflect.DeepEqual(got, want) {
		t.Errorf("after a second Open: %+v, want %+v", got, want)
	}
	// A crash between the copy and the drop: queue.db still holds the history that history.db
	// already has.
	writeV2History(t, dir, base)
	if got := historyOf(t, reopen(t, dir, opts), base); !reflect.DeepEqual(got, want) {
		t.Errorf("after a copy that was not dropped: %+v, want %+v", got, want)
	}
}

// writeV2History writes, into dir's queue.db, a version 2 layout with the history of one event
// (accepted, retrying, completed) and of a second one accepted, and per-minute counts that still
// count 5 entries pruned since.
func writeV2History(t *testing.T, dir string, base time.Time) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, schemaV2+`PRAGMA user_version = 2;`); err != nil {
		t.Fatal(err)
	}
	for i, e := range []struct{ kind, event, record, detail string }{
		{queue.HistAccepted, "ev-1", "rec-1", ""},
		{queue.HistRetrying, "ev-1", "", "POST ${DVRELAY_ERP_URL}: 503 Service Unavailable"},
		{queue.HistAccepted, "ev-2", "rec-2", ""},
		{queue.HistCompleted, "ev-1", "", "complete: 1 steps"},
	} {
		if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO history
			(id, at, kind, event_id, message_id, record_id, correlation_id, entity, event_name, attempt, step, status, duration_ns, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'opportunity', 'Update', ?, '', 0, 0, ?)`,
			10+i, base.Add(time.Duration(i)*time.Minute).UnixNano(), e.kind, e.event, e.event, e.record, "corr-"+e.event,
			min(i, 1), e.detail); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO history_counts (minute, kind, n) VALUES (?, ?, 6)`,
		base.Unix()/60, queue.HistAccepted); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

type historySeen struct {
	entries  []queue.HistoryEntry
	activity queue.Activity
}

// historyOf is what support sees of ev-1 (by record, event and correlation id alike) and the
// charts of the hour from base, and closes q.
func historyOf(t *testing.T, q *Queue, base time.Time) historySeen {
	t.Helper()
	ctx := context.Background()
	var seen historySeen
	for _, key := range []string{"rec-1", "ev-1", "corr-ev-1"} {
		h, err := q.EventHistory(ctx, queue.HistoryQuery{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if seen.entries != nil && !reflect.DeepEqual(h, seen.entries) {
			t.Errorf("history of %s = %+v, want %+v", key, h, seen.entries)
		}
		seen.entries = h
	}
	a, err := q.Activity(ctx, base, time.Minute, 60)
	if err != nil {
		t.Fatal(err)
	}
	seen.activity = a
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return seen
}

func reopen(t *testing.T, dir string, opts Options) *Queue {
	t.Helper()
	return openTestQueue(t, dir, opts)
}

func historyIDs(t *testing.T, dir string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, historyFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids string
	if err := db.QueryRow(`SELECT group_concat(id, ',') FROM (SELECT id FROM history ORDER BY id)`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func tablesInFile(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	found, err := tablesIn(context.Background(), db, "history", "history_counts")
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// schemaV2 is the layout of schema version 2, as data directories written before the history
// had its own file hold it: the history, its counts and the trigger that keeps them in queue.db.
const schemaV2 = `
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
	locked_until   INTEGER NOT NULL DEFAULT 0,
	group_key      TEXT,                       -- the order key (queue.OrderKey); NULL: none
	waiting        INTEGER NOT NULL DEFAULT 0  -- 1: an earlier message of group_key is still here
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (due_at, seq);
-- messages_ready_heads holds the messages a Receive may hand out: unlocked, and first of their
-- order key. A Receive finds the next one at the index's front rather than stepping over (and
-- reading the row of) every message held locked or waiting behind an earlier one of its record.
CREATE INDEX IF NOT EXISTS messages_ready_heads ON messages (due_at, seq) WHERE lock_token IS NULL AND waiting = 0;
CREATE INDEX IF NOT EXISTS messages_locked ON messages (locked_until) WHERE lock_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_group ON messages (group_key, seq) WHERE group_key IS NOT NULL;
-- A message leaving the queue (completed, dead-lettered, however) hands its key to the next
-- message of the key: the one rule of order, kept here so no path that deletes can forget it.
-- A message that keeps its place (an abandon, a retry in place) is updated, never deleted.
CREATE TRIGGER IF NOT EXISTS messages_release_group AFTER DELETE ON messages
WHEN old.group_key IS NOT NULL AND old.waiting = 0
BEGIN
	UPDATE messages SET waiting = 0
	WHERE seq = (SELECT MIN(seq) FROM messages WHERE group_key = old.group_key);
END;

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
	dead_lettered_at INTEGER NOT NULL,
	group_key        TEXT,
	queued_seq       INTEGER NOT NULL DEFAULT 0, -- its sequence number on the main queue; 0: never queued
	-- the latest later event of its record that completed since: resubmitting this one would
	-- apply older data over newer (see markNewerSQL)
	newer_message_id TEXT,
	newer_at         INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_group ON dead_letters (group_key) WHERE group_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS duplicates (
	message_id TEXT    PRIMARY KEY,
	first_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS duplicates_first_seen ON duplicates (first_seen);

CREATE TABLE IF NOT EXISTS resubmits (
	base_message_id TEXT    PRIMARY KEY,
	count           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	at             INTEGER NOT NULL, -- unix ns
	kind           TEXT    NOT NULL,
	event_id       TEXT    NOT NULL,
	message_id     TEXT    NOT NULL,
	record_id      TEXT    NOT NULL,
	correlation_id TEXT    NOT NULL,
	entity         TEXT    NOT NULL,
	event_name     TEXT    NOT NULL,
	attempt        INTEGER NOT NULL,
	step           TEXT    NOT NULL,
	status         INTEGER NOT NULL,
	duration_ns    INTEGER NOT NULL,
	detail         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS history_event ON history (event_id);
CREATE INDEX IF NOT EXISTS history_record ON history (record_id) WHERE record_id <> '';
-- Every index on a random key costs the publish path a page it dirties: the correlation id is
-- indexed on the accepted entries alone, which lead to the rest by event_id.
CREATE INDEX IF NOT EXISTS history_accepted_correlation ON history (correlation_id) WHERE kind = 'accepted';

-- Support finds an event's dead letters by message id (eventIDMatch).
CREATE INDEX IF NOT EXISTS dead_letters_message_id ON dead_letters (message_id);

-- history_counts counts the entries per minute and kind as they are written, so the overview's
-- charts read at most a day of minutes instead of every entry of the day. A trigger keeps it,
-- inside the insert's own statement.
CREATE TABLE IF NOT EXISTS history_counts (
	minute INTEGER NOT NULL, -- unix minutes
	kind   TEXT    NOT NULL,
	n      INTEGER NOT NULL,
	PRIMARY KEY (minute, kind)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS history_counted AFTER INSERT ON history BEGIN
	INSERT INTO history_counts (minute, kind, n) VALUES (NEW.at / 60000000000, NEW.kind, 1)
		ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;
`
