package local

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// defaultMaxBatch caps one group commit so a flood of publishers cannot hold the single connection
// (and with it every Receive) for long.
const defaultMaxBatch = 256

// row is a message ready to be written: copied from the caller and with its properties encoded,
// so the writer never touches caller memory and never fails on bad input.
type row struct {
	messageID     string
	correlationID string
	subject       string
	sessionID     string
	contentType   string
	body          []byte
	props         string
	scheduledNS   int64 // 0: due at once
}

func newRow(m *queue.Message) (row, error) {
	props, err := encodeProps(m.ApplicationProperties)
	if err != nil {
		return row{}, err
	}
	r := row{
		messageID:     m.MessageID,
		correlationID: m.CorrelationID,
		subject:       m.Subject,
		sessionID:     m.SessionID,
		contentType:   m.ContentType,
		body:          append([]byte{}, m.Body...),
		props:         props,
	}
	if r.messageID == "" {
		// Service Bus stamps a message without an id with a fresh one; it is then never a duplicate.
		r.messageID = uuid.NewString()
	}
	if !m.ScheduledEnqueueTime.IsZero() {
		r.scheduledNS = m.ScheduledEnqueueTime.UnixNano()
	}
	return r, nil
}

type publishRequest struct {
	ctx  context.Context
	row  row
	done chan error // buffered: the writer never waits for a caller that gave up
}

// Publish stores m durably and returns once the transaction holding it is committed and fsynced.
// A MessageID already published within the duplicate window is accepted and dropped, as Service
// Bus does; scheduled messages count too.
//
// Group commit: an fsync costs far more than an insert, so Publish does not commit on its own.
// It hands m to the single writer goroutine, which takes every publish waiting at that moment
// (up to defaultMaxBatch), writes them in one transaction with one fsync, and then answers each
// caller. Under concurrency the callers share the fsync; a lone caller pays exactly one. A caller
// whose ctx ends before the commit gets ctx.Err() while its message may still land: a retry with
// the same MessageID is then dropped as a duplicate, so nothing is stored twice.
func (q *Queue) Publish(ctx context.Context, m *queue.Message) error {
	r, err := newRow(m)
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.MessageID, err)
	}
	req := &publishRequest{ctx: ctx, row: r, done: make(chan error, 1)}
	select {
	case q.publishes <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-q.closing:
		return fmt.Errorf("publish %s: %w", m.MessageID, ErrClosed)
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.MessageID, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the only goroutine that commits publishes. It stops when the queue closes; it never
// leaves a request it has taken unanswered.
func (q *Queue) writer() {
	defer close(q.writerDone)
	batch := make([]*publishRequest, 0, q.opts.maxBatch)
	for {
		select {
		case <-q.closing:
			return
		case req := <-q.publishes:
			batch = append(batch[:0], req)
		}
	drain:
		for len(batch) < q.opts.maxBatch {
			select {
			case req := <-q.publishes:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		batch = dropAbandoned(batch)
		if len(batch) == 0 {
			continue
		}
		err := q.commitPublishes(batch)
		for _, req := range batch {
			req.done <- err
		}
		if err == nil {
			q.wake()
		} else {
			q.log.Error("commit publishes", "count", len(batch), "error", err)
		}
		clear(batch)
	}
}

// dropAbandoned answers the requests whose caller has already given up and returns the rest:
// there is no one left to tell that such a message landed.
func dropAbandoned(batch []*publishRequest) []*publishRequest {
	kept := batch[:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done <- err
			continue
		}
		kept = append(kept, req)
	}
	clear(batch[len(kept):])
	return kept
}

func (q *Queue) commitPublishes(batch []*publishRequest) error {
	// The batch belongs to many callers, so no single caller's ctx may abort it.
	ctx := context.Background()
	now := q.nowNS()
	return q.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM duplicates WHERE first_seen <= ?`,
			now-q.opts.DuplicateWindow.Nanoseconds()); err != nil {
			return fmt.Errorf("forget old message ids: %w", err)
		}
		for _, req := range batch {
			if err := q.insertMessage(ctx, tx, req.row, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// insertMessage writes r unless its MessageID was seen within the duplicate window.
func (q *Queue) insertMessage(ctx context.Context, tx *sql.Tx, r row, now int64) error {
	fresh, err := q.remember(ctx, tx, r.messageID, now)
	if err != nil {
		return err
	}
	if !fresh {
		return nil
	}
	due := max(r.scheduledNS, now)
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages
		(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.messageID, r.correlationID, r.subject, r.sessionID, r.contentType, r.body, r.props, now, due); err != nil {
		return fmt.Errorf("insert %s: %w", r.messageID, err)
	}
	return nil
}

// remember records id for duplicate detection and reports whether it is new within the window.
func (q *Queue) remember(ctx context.Context, tx *sql.Tx, id string, now int64) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO duplicates (message_id, first_seen) VALUES (?, ?)
		ON CONFLICT (message_id) DO UPDATE SET first_seen = excluded.first_seen
		WHERE duplicates.first_seen <= ?`,
		id, now, now-q.opts.DuplicateWindow.Nanoseconds())
	if err != nil {
		return false, fmt.Errorf("duplicate check %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("duplicate check %s: %w", id, err)
	}
	return n > 0, nil
}

// DeadLetter parks m directly on the dead-letter queue with a reason and a description, which
// are also written as the DeadLetterReason and DeadLetterErrorDescription application properties.
func (q *Queue) DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error {
	if err := q.checkOpen(); err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	r, err := newRow(m)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	props, err := mergeProps(r.props, deadLetterProps(reason, description))
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	now := q.nowNS()
	err = q.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dead_letters
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at,
			 delivery_count, reason, description, dead_lettered_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
			r.messageID, r.correlationID, r.subject, r.sessionID, r.contentType, r.body, props, now,
			reason, description, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	return nil
}

func deadLetterProps(reason, description string) map[string]any {
	return map[string]any{
		queue.PropDeadLetterReason:           reason,
		queue.PropDeadLetterErrorDescription: description,
	}
}
