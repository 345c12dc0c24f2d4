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

	"github.com/dvrelay/dvrelay/internal/queue"
)

// The history is what support reads to answer "what happened to this record": one row per thing
// that happened to an event (accepted, each attempt's outcome, resubmitted, purged).
//
// It lives in its own file, history.db, beside queue.db, with its own writer connection and
// group-commit writer goroutine (historyStore), so it costs the queue's writer nothing: the two
// writers commit side by side. Each entry is written right after the queue's commit that makes
// it true (publish, settle, resubmit, purge), and the caller is answered only once both are
// committed, so an answered publish's entry survives a killed process. The history is not
// fsynced per commit: a power loss may lose its last entries (never anything of the queue's),
// and a process killed between the two commits leaves the queue's change without its entry.
// Either way a line is missing, and nothing is delivered twice for it. The history is bounded by
// age and by count, pruned as it grows.

var (
	_ queue.HistoryReader     = (*Queue)(nil)
	_ queue.DeadLetterGrouper = (*Queue)(nil)
)

const (
	// historyPruneEvery is how many entries are written between two prunes: a prune deletes at
	// most this many rows past the count bound, so it stays a small part of the write it rides on.
	historyPruneEvery = 1000
)

// historySchema is history.db's. record_id is set on the entries that carry the event's body
// (accepted); the others find their record through event_id.
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

// receiveTimes remembers when each held lock was taken, so an attempt's history entry can say
// how long it ran, from its receive to its settlement.
type receiveTimes struct {
	mu         sync.Mutex
	receivedAt map[string]time.Time // lock token → when Receive handed the message out
}

// noteReceived remembers when got was received. Entries whose lock was never settled (the
// process lost it) are dropped once they are older than any lock can be.
func (q *Queue) noteReceived(got []*queue.Received) {
	h := &q.received
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
	h := &q.received
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
	h := &q.received
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.receivedAt, lockToken)
}

// record writes e to the history and returns once it is committed. It runs after the queue's
// commit that makes e true, and a failure is logged, never returned: the queue's change stands,
// and a missing line of history must never cost a redelivery or a refused publish.
func (q *Queue) record(ctx context.Context, e queue.HistoryEntry) {
	err := q.hist.write(ctx, []queue.HistoryEntry{e})
	if err == nil {
		return
	}
	if ok, notLogged := q.historyWarn.allow(time.Now()); ok {
		q.log.WarnContext(ctx, "history: the change is committed but its history entry may not be written",
			"messageId", e.MessageID, "kind", e.Kind, "error", err, "notLogged", notLogged)
	}
}

// historyWarnings bounds the lines about history entries that failed to write to one a second,
// each saying how many failures went unlogged since the last: a history file that cannot be
// written (a full disk) fails every entry, and a line per publish at the intake's rate would
// bury every other line.
type historyWarnings struct {
	mu        sync.Mutex
	last      time.Time
	notLogged int
}

func (w *historyWarnings) allow(now time.Time) (ok bool, notLogged int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.IsZero() && now.Sub(w.last) < time.Second {
		w.notLogged++
		return false, 0
	}
	w.last, notLogged, w.notLogged = now, w.notLogged, 0
	return true, notLogged
}

// acceptedEntry is the history entry of a message the intake published, committed at now, with
// the record, entity and event name its properties give (see newRow).
func acceptedEntry(r row, now int64) queue.HistoryEntry {
	return queue.HistoryEntry{
		At: fromNS(now), Kind: queue.HistAccepted,
		EventID: queue.BaseID(r.messageID), MessageID: r.messageID, RecordID: r.recordID,
		CorrelationID: r.correlationID, Entity: r.entity, EventName: r.eventName,
	}
}

// outcomeEntry is the history entry of an attempt's outcome, which Settle writes once the
// settlement is committed (and dates by that commit).
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

// parkedEntry is the history entry of what support did to dead letter seq (resubmitted or
// purged) at now, read in the transaction that does it, before the dead letter's row goes. It
// fails with queue.ErrNotFound when nothing is parked at seq.
func parkedEntry(ctx context.Context, tx *sql.Tx, seq int64, kind, detail string, now int64) (queue.HistoryEntry, error) {
	var (
		e     queue.HistoryEntry
		props string
	)
	err := tx.QueryRowContext(ctx, `SELECT message_id, correlation_id, subject, props FROM dead_letters WHERE seq = ?`, seq).
		Scan(&e.MessageID, &e.CorrelationID, &e.EventName, &props)
	if errors.Is(err, sql.ErrNoRows) {
		return e, queue.ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("read dead letter %d for its history entry: %w", seq, err)
	}
	// A dead letter whose properties no longer parse still gets its entry, without an entity.
	decoded, _ := decodeProps(props)
	e.At, e.Kind, e.EventID, e.Detail = fromNS(now), kind, queue.BaseID(e.MessageID), detail
	e.Entity = stringProp(decoded, queue.PropEntity)
	return e, nil
}

// EventHistory lists the entries of every event whose EventId, RecordId or CorrelationId is
// hq.Key, oldest first. It reads on the history's read pool.
//
// Oldest first is by the time of the queue's commit each entry tells of, then by id: entries of
// different callers reach the history writer in whatever order their callers do, so an attempt's
// outcome may be written a moment before the accepted entry of the publish it follows.
func (q *Queue) EventHistory(ctx context.Context, hq queue.HistoryQuery) ([]queue.HistoryEntry, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", hq.Key, err)
	}
	limit := hq.Limit
	if limit <= 0 {
		limit = queue.DefaultHistoryLimit
	}
	out, err := readHistory(ctx, q, func(ctx context.Context, db *sql.DB) ([]queue.HistoryEntry, error) {
		rows, err := db.QueryContext(ctx, `SELECT at, kind, event_id, message_id, record_id, correlation_id, entity,
				event_name, attempt, step, status, duration_ns, detail
			FROM history WHERE event_id IN (
				SELECT event_id FROM history WHERE record_id = lower(@key) AND record_id <> ''
				UNION SELECT event_id FROM history WHERE event_id = @key
				UNION SELECT event_id FROM history WHERE correlation_id = @key AND kind = 'accepted')
			ORDER BY at, id LIMIT @limit`, sql.Named("key", hq.Key), sql.Named("limit", limit))
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
// counts: since and bucket are taken to whole minutes. It reads on the history's read pool.
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
	_, err := readHistory(ctx, q, func(ctx context.Context, db *sql.DB) (struct{}, error) {
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
