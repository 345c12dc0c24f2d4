package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// The history is what support reads to answer "what happened to this record": one row per thing
// that happened to an event (accepted, each attempt's outcome, resubmitted, purged). It lives in
// the queue's own file, written in the transactions that make those things true (publish, settle,
// resubmit, purge), and it is bounded like the rest of the file: by age and by count, pruned as
// it grows.

var (
	_ queue.HistoryReader     = (*Queue)(nil)
	_ queue.DeadLetterGrouper = (*Queue)(nil)
)

const (
	// historyPruneEvery is how many entries are written between two prunes: a prune deletes at
	// most this many rows past the count bound, so it stays a small part of the write it rides on.
	historyPruneEvery = 1000
)

// historySchema is created beside the queue's tables. record_id is set on the entries that carry
// the event's body (accepted); the others find their record through event_id.
const historySchema = `
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

// acceptedHistorySQL writes an accepted entry, with the record, entity and event name the
// message's properties give (see newRow). Positional parameters: it runs on every publish, and a
// named one costs an allocation.
const acceptedHistorySQL = `INSERT INTO history
	(at, kind, event_id, message_id, record_id, correlation_id, entity, event_name, attempt, step, status, duration_ns, detail)
	VALUES (?1, '` + queue.HistAccepted + `', ?2, ?3, ?4, ?5, ?6, ?7, 0, '', 0, 0, '')`

const insertHistorySQL = `INSERT INTO history
	(at, kind, event_id, message_id, record_id, correlation_id, entity, event_name, attempt, step, status, duration_ns, detail)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// historyState is the in-memory part of the history: when each held lock was taken, so an
// attempt's duration runs from its receive to its settlement, and how many entries were written
// since the last prune.
type historyState struct {
	mu         sync.Mutex
	receivedAt map[string]time.Time // lock token → when Receive handed the message out
	written    int
}

// noteReceived remembers when got was received. Entries whose lock was never settled (the
// process lost it) are dropped once they are older than any lock can be.
func (q *Queue) noteReceived(got []*queue.Received) {
	h := &q.history
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.receivedAt == nil {
		h.receivedAt = map[string]time.Time{}
	}
	now := q.opts.Now()
	if len(h.receivedAt) > 4096 {
		for token, at := range h.receivedAt {
			if now.Sub(at) > 10*q.opts.LockDuration {
				delete(h.receivedAt, token)
			}
		}
	}
	for _, r := range got {
		h.receivedAt[r.LockToken] = now
	}
}

// receivedFor is how long ago the delivery with lockToken was received (0 when unknown).
func (q *Queue) receivedFor(lockToken string) time.Duration {
	h := &q.history
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.receivedAt[lockToken]
	if !ok {
		return 0
	}
	return q.opts.Now().Sub(at)
}

// forgetReceived drops the receive time of a delivery that is settled.
func (q *Queue) forgetReceived(lockToken string) {
	h := &q.history
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.receivedAt, lockToken)
}

// recordAccepted writes the accepted entry of a message the intake published, in its transaction.
func (q *Queue) recordAccepted(ctx context.Context, tx *sql.Tx, r row, now int64) error {
	if _, err := tx.StmtContext(ctx, q.stmts.historyAccepted).ExecContext(ctx, now,
		queue.BaseID(r.messageID), r.messageID, r.recordID, r.correlationID, r.entity, r.eventName); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return q.pruneHistory(ctx, tx, now)
}

// outcomeEntry is the history entry of an attempt's outcome, which Settle writes in the
// settlement's own transaction.
func (q *Queue) outcomeEntry(d queue.Delivery, out queue.Outcome) queue.HistoryEntry {
	e := queue.HistoryEntry{
		EventID: queue.BaseID(d.MessageID), MessageID: d.MessageID, CorrelationID: d.CorrelationID,
		Entity:    stringProp(d.ApplicationProperties, queue.PropEntity),
		EventName: stringProp(d.ApplicationProperties, queue.PropEventName),
		Attempt:   d.Attempt(), Step: out.Step, Duration: q.receivedFor(d.LockToken),
	}
	if e.EventName == "" {
		e.EventName = d.Subject
	}
	switch out.Kind {
	case queue.Complete:
		e.Kind, e.Detail = queue.HistCompleted, out.Summary
	case queue.RetryLater:
		e.Kind, e.Detail = queue.HistRetrying, out.Description
	default:
		e.Kind, e.Detail = queue.HistDeadLettered, queue.DeadLetterInfoFor(d, out).Description
	}
	e.Status = statusIn(e.Detail)
	return e
}

// recordParked writes what support did to dead letter seq (resubmitted or purged), in the
// transaction that does it, before the dead letter's row goes.
func (q *Queue) recordParked(ctx context.Context, tx *sql.Tx, seq int64, kind, detail string, now int64) error {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT message_id FROM dead_letters WHERE seq = ?`, seq).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // nothing parked: the caller reports it
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO history
		(at, kind, event_id, message_id, record_id, correlation_id, entity, event_name, attempt, step, status, duration_ns, detail)
		SELECT @now, @kind, @event, message_id, '', correlation_id,
			coalesce(json_extract(props, '$.`+queue.PropEntity+`'), ''), subject, 0, '', 0, 0, @detail
		FROM dead_letters WHERE seq = @seq`,
		sql.Named("now", now), sql.Named("kind", kind), sql.Named("event", queue.BaseID(id)),
		sql.Named("detail", bounded(detail)), sql.Named("seq", seq))
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return q.pruneHistory(ctx, tx, now)
}

func (q *Queue) insertHistory(ctx context.Context, tx *sql.Tx, e queue.HistoryEntry, now int64) error {
	if _, err := tx.StmtContext(ctx, q.stmts.historyInsert).ExecContext(ctx, now, e.Kind, e.EventID, e.MessageID, e.RecordID, e.CorrelationID,
		e.Entity, e.EventName, e.Attempt, e.Step, e.Status, e.Duration.Nanoseconds(), bounded(e.Detail)); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return q.pruneHistory(ctx, tx, now)
}

// pruneHistory keeps the history within its age and count every historyPruneEvery entries.
func (q *Queue) pruneHistory(ctx context.Context, tx *sql.Tx, now int64) error {
	h := &q.history
	h.mu.Lock()
	h.written++
	due := h.written >= historyPruneEvery
	if due {
		h.written = 0
	}
	h.mu.Unlock()
	if !due {
		return nil
	}
	maxAge, maxEntries := q.historyBounds()
	// Entries are written in time order, so the old ones are at the front of the id order: look
	// at the first few thousand (no index on at to keep up on every insert) and past the count.
	if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?) AND at < ?`,
		2*historyPruneEvery, now-maxAge.Nanoseconds()); err != nil {
		return fmt.Errorf("history: prune by age: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE id <= (SELECT MAX(id) FROM history) - ?`, maxEntries); err != nil {
		return fmt.Errorf("history: prune by count: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM history_counts WHERE minute < ?`, (now-maxAge.Nanoseconds())/int64(time.Minute)); err != nil {
		return fmt.Errorf("history: prune counts: %w", err)
	}
	return nil
}

func (q *Queue) historyBounds() (time.Duration, int) {
	maxAge, maxEntries := q.opts.HistoryMaxAge, q.opts.HistoryMaxEntries
	if maxAge <= 0 {
		maxAge = config.DefaultHistoryMaxAge
	}
	if maxEntries <= 0 {
		maxEntries = config.DefaultHistoryMaxEntries
	}
	return maxAge, maxEntries
}

// EventHistory lists the entries of every event whose EventId, RecordId or CorrelationId is
// hq.Key, oldest first. It reads on the read pool.
func (q *Queue) EventHistory(ctx context.Context, hq queue.HistoryQuery) ([]queue.HistoryEntry, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", hq.Key, err)
	}
	limit := hq.Limit
	if limit <= 0 {
		limit = queue.DefaultHistoryLimit
	}
	out, err := read(ctx, q, func(ctx context.Context, db *sql.DB) ([]queue.HistoryEntry, error) {
		rows, err := db.QueryContext(ctx, `SELECT at, kind, event_id, message_id, record_id, correlation_id, entity,
				event_name, attempt, step, status, duration_ns, detail
			FROM history WHERE event_id IN (
				SELECT event_id FROM history WHERE record_id = lower(@key) AND record_id <> ''
				UNION SELECT event_id FROM history WHERE event_id = @key
				UNION SELECT event_id FROM history WHERE correlation_id = @key AND kind = 'accepted')
			ORDER BY id LIMIT @limit`, sql.Named("key", hq.Key), sql.Named("limit", limit))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []queue.HistoryEntry
		for rows.Next() {
			var (
				e        queue.HistoryEntry
				at, took int64
			)
			if err := rows.Scan(&at, &e.Kind, &e.EventID, &e.MessageID, &e.RecordID, &e.CorrelationID, &e.Entity,
				&e.EventName, &e.Attempt, &e.Step, &e.Status, &took, &e.Detail); err != nil {
				return nil, err
			}
			e.At, e.Duration = fromNS(at), time.Duration(took)
			out = append(out, e)
		}
		return out, rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", hq.Key, err)
	}
	return out, nil
}

// Activity counts the history's entries by kind in buckets from since, from the per-minute
// counts: since and bucket are taken to whole minutes.
func (q *Queue) Activity(ctx context.Context, since time.Time, bucket time.Duration, buckets int) (queue.Activity, error) {
	since, bucket = since.Truncate(time.Minute), max(bucket.Truncate(time.Minute), time.Minute)
	a := queue.Activity{Since: since, Bucket: bucket, Counts: make([]map[string]int, buckets)}
	for i := range a.Counts {
		a.Counts[i] = map[string]int{}
	}
	if err := q.checkOpen(); err != nil {
		return a, fmt.Errorf("activity: %w", err)
	}
	start := since.Unix() / 60
	per := int64(bucket / time.Minute)
	_, err := read(ctx, q, func(ctx context.Context, db *sql.DB) (struct{}, error) {
		rows, err := db.QueryContext(ctx, `SELECT (minute - @start) / @per, kind, SUM(n) FROM history_counts
			WHERE minute >= @start AND minute < @end GROUP BY 1, 2`,
			sql.Named("start", start), sql.Named("end", start+per*int64(buckets)), sql.Named("per", per))
		if err != nil {
			return struct{}{}, err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				i, n int
				kind string
			)
			if err := rows.Scan(&i, &kind, &n); err != nil {
				return struct{}{}, err
			}
			if i >= 0 && i < buckets {
				a.Counts[i][kind] += n
			}
		}
		return struct{}{}, rows.Err()
	})
	if err != nil {
		return a, fmt.Errorf("activity: %w", err)
	}
	return a, nil
}

// GroupDeadLetters counts the dead letters f selects by reason, failed step and entity, largest
// group first. f's limit and paging do not apply.
func (q *Queue) GroupDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]queue.DeadLetterGroup, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("group dead letters: %w", err)
	}
	out, err := read(ctx, q, func(ctx context.Context, db *sql.DB) ([]queue.DeadLetterGroup, error) {
		rows, err := db.QueryContext(ctx, `SELECT reason,
				coalesce(json_extract(props, '$.`+queue.PropFailedStep+`'), ''),
				coalesce(json_extract(props, '$.`+queue.PropEntity+`'), ''),
				COUNT(*), MIN(dead_lettered_at), MAX(dead_lettered_at)
			FROM dead_letters
			WHERE (@reason = '' OR reason = @reason COLLATE NOCASE)
				AND (@entity = '' OR json_extract(props, '$.`+queue.PropEntity+`') = @entity COLLATE NOCASE)
				AND (@since IS NULL OR dead_lettered_at >= @since)
				AND (@before IS NULL OR dead_lettered_at < @before)
			GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`,
			sql.Named("reason", f.Reason), sql.Named("entity", f.Entity),
			sql.Named("since", optionalNS(f.Since)), sql.Named("before", optionalNS(f.Before)))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []queue.DeadLetterGroup
		for rows.Next() {
			var (
				g              queue.DeadLetterGroup
				oldest, newest int64
			)
			if err := rows.Scan(&g.Reason, &g.Step, &g.Entity, &g.Count, &oldest, &newest); err != nil {
				return nil, err
			}
			g.Oldest, g.Newest = fromNS(oldest), fromNS(newest)
			out = append(out, g)
		}
		return out, rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("group dead letters: %w", err)
	}
	return out, nil
}

// httpStatus finds the downstream's status in a failure's description, as the worker writes it:
// "POST ${DVRELAY_ERP_URL}: 400 Bad Request: …", "step erp-sync: 503".
var httpStatus = regexp.MustCompile(`: ([1-5][0-9][0-9])(?:$|[ :(])`)

func statusIn(detail string) int {
	m := httpStatus.FindStringSubmatch(detail)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// bounded cuts s to queue.MaxHistoryDetail bytes, at a character boundary.
func bounded(s string) string {
	if len(s) <= queue.MaxHistoryDetail {
		return s
	}
	cut := queue.MaxHistoryDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func stringProp(props map[string]any, name string) string {
	s, _ := props[name].(string)
	return s
}
