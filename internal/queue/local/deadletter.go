package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

var _ queue.DeadLetterAdmin = (*Queue)(nil)

// ListDeadLetters returns up to limit parked messages, oldest first.
func (q *Queue) ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error) {
	return q.QueryDeadLetters(ctx, queue.DeadLetterFilter{Limit: max(limit, 1)})
}

// eventIDMatch is the SQL form of queue.BaseID(message_id) = @event: the EventId itself, or
// one of its retry or resubmit ids. The range ('/' < '0') lets SQLite find them through an index
// on message_id (dead_letters_message_id) instead of reading every row.
const eventIDMatch = `(message_id = @event
	OR (message_id > @event || '/' AND message_id < @event || '0' AND (
		substr(message_id, 1, length(@event) + 7) = @event || '/retry/'
		OR substr(message_id, 1, length(@event) + 10) = @event || '/resubmit/')))`

// QueryDeadLetters returns the parked messages f selects, oldest first, filtered in SQL with the
// semantics of queue.DeadLetterFilter.Match. Messages whose last lock ran out on their final
// delivery are moved there first, so support sees them at once.
func (q *Queue) QueryDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var out []queue.DeadLettered
	err := q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		if err := q.expireLocks(ctx, tx, q.nowNS()); err != nil {
			return err
		}
		var err error
		out, err = queryDeadLetters(ctx, tx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// querier is what runs a query: a transaction on the writer, or the read pool.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryDeadLetters selects the dead letters f selects, oldest first, with the semantics of
// queue.DeadLetterFilter.Match.
func queryDeadLetters(ctx context.Context, db querier, f queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, message_id, correlation_id, subject, session_id,
		content_type, body, props, delivery_count, reason, description, dead_lettered_at
		FROM dead_letters
		WHERE (@seq = 0 OR seq = @seq) AND seq > @after
			AND (@event = '' OR `+eventIDMatch+`)
			AND (@reason = '' OR reason = @reason COLLATE NOCASE)
			AND (@entity = '' OR json_extract(props, '$.`+queue.PropEntity+`') = @entity COLLATE NOCASE)
			AND (@since IS NULL OR dead_lettered_at >= @since)
			AND (@before IS NULL OR dead_lettered_at < @before)
		ORDER BY seq LIMIT @limit`,
		sql.Named("seq", f.Seq), sql.Named("after", f.AfterSeq), sql.Named("event", f.EventID),
		sql.Named("reason", f.Reason), sql.Named("entity", f.Entity),
		sql.Named("since", optionalNS(f.Since)), sql.Named("before", optionalNS(f.Before)),
		sql.Named("limit", f.Max()))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.DeadLettered
	for rows.Next() {
		var (
			d     queue.DeadLettered
			props string
			at    int64
		)
		if err := rows.Scan(&d.SequenceNumber, &d.MessageID, &d.CorrelationID, &d.Subject, &d.SessionID,
			&d.ContentType, &d.Body, &props, &d.DeliveryCount, &d.Reason, &d.Description, &at); err != nil {
			return nil, err
		}
		if d.ApplicationProperties, err = decodeProps(props); err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", d.SequenceNumber, err)
		}
		d.DeadLetteredAt = fromNS(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

var _ queue.DeadLetterReader = (*Queue)(nil)

// ReadDeadLetters is QueryDeadLetters on the read pool: it never waits for the writer, nor makes
// it wait, so a console that reads the dead letters does not slow the intake. Unlike
// QueryDeadLetters it does not first move the messages whose last lock ran out; the next
// Receive does.
func (q *Queue) ReadDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out, err := read(ctx, q, func(ctx context.Context, db *sql.DB) ([]queue.DeadLettered, error) {
		return queryDeadLetters(ctx, db, f)
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return out, nil
}

// optionalNS is t in unix ns, or NULL for the zero time.
func optionalNS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// History lists what this queue knows of the event eventID: its dead letters, its messages on
// the main queue, the ids its history shows accepted within the duplicate window and its
// resubmissions, completed by queue.History with the ids they imply.
func (q *Queue) History(ctx context.Context, eventID string) ([]queue.Sighting, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", eventID, err)
	}
	// A read on the read pool: matching the event's retries and resubmissions walks the tables,
	// which on the writer connection would hold up every publish for as long. One read
	// transaction keeps the two queries to one snapshot. The ids of the window are read from the
	// history's accepted entries, found by their EventId: message_ids has no index on the id.
	seen, err := read(ctx, q, func(ctx context.Context, db *sql.DB) ([]queue.Sighting, error) {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback() }()
		var seen []queue.Sighting
		event := sql.Named("event", eventID)
		rows, err := tx.QueryContext(ctx, `
			SELECT message_id, seq, dead_lettered_at, 0 FROM dead_letters WHERE `+eventIDMatch+`
			UNION ALL SELECT message_id, 0, enqueued_at, 1 FROM messages WHERE `+eventIDMatch+`
			UNION ALL SELECT message_id, 0, at, 2 FROM history
				WHERE event_id = @event AND kind = '`+queue.HistAccepted+`' AND at > @since`,
			event, sql.Named("since", q.windowStart(q.nowNS())))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		states := [...]string{queue.SeenDeadLettered, queue.SeenQueued, queue.SeenPublished}
		for rows.Next() {
			var (
				s     queue.Sighting
				at    int64
				state int
			)
			if err := rows.Scan(&s.MessageID, &s.Seq, &at, &state); err != nil {
				return nil, err
			}
			s.State, s.At = states[state], fromNS(at)
			seen = append(seen, s)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		// Every resubmission of the event started a chain <EventId>/resubmit/<n>.
		var resubmits int64
		err = tx.QueryRowContext(ctx, `SELECT count FROM resubmits WHERE base_message_id = ?`, eventID).Scan(&resubmits)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		for n := int64(1); n <= resubmits; n++ {
			seen = append(seen, queue.Sighting{MessageID: queue.ResubmitID(eventID, n), State: queue.SeenImplied})
		}
		return seen, nil
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", eventID, err)
	}
	return queue.History(seen), nil
}

// Resubmit moves the dead-lettered message seq back to the main queue as a new delivery chain
// and returns its new MessageID, queue.ResubmitID counted per event ("<EventId>/resubmit/<n>"):
// Service Bus would drop a copy with the original id as a duplicate, and so would this queue. The
// dead-letter properties go, and so does Attempt, so the event gets a full set of retries;
// OriginalMessageId keeps the trail.
func (q *Queue) Resubmit(ctx context.Context, seq int64) (string, error) {
	if err := q.checkOpen(); err != nil {
		return "", fmt.Errorf("resubmit dead letter %d: %w", seq, err)
	}
	var newID string
	// Through the writer, as a publish: the new id joins the duplicate window's index, which is
	// the writer's own (recentids.go).
	err := q.write(ctx, survivesPowerLoss, func(ctx context.Context, tx *sql.Tx, now int64) error {
		var (
			id, props string
			key       sql.NullString
		)
		err := tx.QueryRowContext(ctx, `SELECT message_id, props, group_key FROM dead_letters WHERE seq = ?`, seq).Scan(&id, &props, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return queue.ErrNotFound
		}
		if err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO resubmits (base_message_id, count) VALUES (?, 1)
			ON CONFLICT (base_message_id) DO UPDATE SET count = count + 1
			RETURNING count`, queue.BaseID(id)).Scan(&n); err != nil {
			return fmt.Errorf("count resubmits: %w", err)
		}
		newID = queue.ResubmitID(id, n)
		update := map[string]any{}
		if stored, err := decodeProps(props); err == nil {
			if _, ok := stored[queue.PropOriginalMessageID]; !ok {
				update[queue.PropOriginalMessageID] = id
			}
		}
		merged, err := mergeProps(props, update,
			queue.PropDeadLetterReason, queue.PropDeadLetterErrorDescription,
			queue.PropFailedStep, queue.PropOriginalDeliveryCount, queue.PropAttempt)
		if err != nil {
			return err
		}
		if _, err := q.remember(ctx, tx, newID, now); err != nil {
			return err
		}
		// The copy joins the tail of its record's events: it waits for any of them still queued.
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at, group_key, waiting)
			SELECT @id, correlation_id, subject, session_id, content_type, body, @props, @now, @now, @key, `+joinsGroup("@key")+`
			FROM dead_letters WHERE seq = @seq`, sql.Named("id", newID), sql.Named("props", merged), sql.Named("now", now),
			sql.Named("key", key), sql.Named("seq", seq)); err != nil {
			return fmt.Errorf("enqueue copy: %w", err)
		}
		if err := q.recordParked(ctx, tx, seq, queue.HistResubmitted, "resubmitted as "+newID, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM dead_letters WHERE seq = ?`, seq)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("resubmit dead letter %d: %w", seq, err)
	}
	q.wake()
	return newID, nil
}

// PurgeDeadLetter deletes the dead-lettered message seq for good.
func (q *Queue) PurgeDeadLetter(ctx context.Context, seq int64) error {
	if err := q.checkOpen(); err != nil {
		return fmt.Errorf("purge dead letter %d: %w", seq, err)
	}
	err := q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		if err := q.recordParked(ctx, tx, seq, queue.HistPurged, "purged", q.nowNS()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM dead_letters WHERE seq = ?`, seq)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return queue.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("purge dead letter %d: %w", seq, err)
	}
	return nil
}
