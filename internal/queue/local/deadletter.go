package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// ListDeadLetters returns up to limit parked messages, oldest first. Messages whose last lock
// ran out on their final delivery are moved there first, so support sees them at once.
func (q *Queue) ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error) {
	if err := q.checkOpen(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var out []queue.DeadLettered
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		if err := q.expireLocks(ctx, tx, q.nowNS()); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT seq, message_id, correlation_id, subject, session_id,
			content_type, body, props, delivery_count, reason, description, dead_lettered_at
			FROM dead_letters ORDER BY seq LIMIT ?`, max(limit, 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d     queue.DeadLettered
				props string
				at    int64
			)
			if err := rows.Scan(&d.SequenceNumber, &d.MessageID, &d.CorrelationID, &d.Subject, &d.SessionID,
				&d.ContentType, &d.Body, &props, &d.DeliveryCount, &d.Reason, &d.Description, &at); err != nil {
				return err
			}
			if d.ApplicationProperties, err = decodeProps(props); err != nil {
				return fmt.Errorf("dead letter %d: %w", d.SequenceNumber, err)
			}
			d.DeadLetteredAt = fromNS(at)
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Resubmit moves the dead-lettered message seq back to the main queue as a new delivery chain
// and returns its new MessageID, "<original>/resubmit/<n>": Service Bus would drop a copy with
// the original id as a duplicate, and so would this queue. The dead-letter properties go, and so
// does Attempt, so the event gets a full set of retries; OriginalMessageId keeps the trail.
func (q *Queue) Resubmit(ctx context.Context, seq int64) (string, error) {
	if err := q.checkOpen(); err != nil {
		return "", fmt.Errorf("resubmit dead letter %d: %w", seq, err)
	}
	var newID string
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		var id, props string
		err := tx.QueryRowContext(ctx, `SELECT message_id, props FROM dead_letters WHERE seq = ?`, seq).Scan(&id, &props)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		base := resubmitBase(id)
		var n int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO resubmits (base_message_id, count) VALUES (?, 1)
			ON CONFLICT (base_message_id) DO UPDATE SET count = count + 1
			RETURNING count`, base).Scan(&n); err != nil {
			return fmt.Errorf("count resubmits: %w", err)
		}
		newID = base + resubmitInfix + strconv.FormatInt(n, 10)
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
		now := q.nowNS()
		if _, err := q.remember(ctx, tx, newID, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at)
			SELECT ?, correlation_id, subject, session_id, content_type, body, ?, ?, ?
			FROM dead_letters WHERE seq = ?`, newID, merged, now, now, seq); err != nil {
			return fmt.Errorf("enqueue copy: %w", err)
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
	err := q.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM dead_letters WHERE seq = ?`, seq)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("purge dead letter %d: %w", seq, err)
	}
	return nil
}

const resubmitInfix = "/resubmit/"

// resubmitBase strips the "/resubmit/<n>" suffix a resubmitted message carries, so resubmitting
// it again counts on from the original MessageID instead of stacking suffixes.
func resubmitBase(id string) string {
	i := strings.LastIndex(id, resubmitInfix)
	if i < 0 {
		return id
	}
	if _, err := strconv.Atoi(id[i+len(resubmitInfix):]); err != nil {
		return id
	}
	return id[:i]
}

// Stats is a snapshot of the queue for health checks and alerts.
type Stats struct {
	Queued          int           // available or locked
	Scheduled       int           // waiting for their scheduled time
	DeadLettered    int           // parked for support
	OldestQueuedAge time.Duration // how long the oldest queued message has been due; 0 when none
}
