package local

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/queue"
)

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
	groupKey      sql.NullString
	scheduledNS   int64 // 0: due at once
	// What the history's accepted entry names, read from the properties here rather than by
	// parsing the body in SQL on the writer's path.
	recordID, entity, eventName string
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
		groupKey:      groupKey(m.ApplicationProperties),
		entity:        stringProp(m.ApplicationProperties, queue.PropEntity),
		eventName:     cmp.Or(stringProp(m.ApplicationProperties, queue.PropEventName), m.Subject),
	}
	if _, record, ok := strings.Cut(r.groupKey.String, "/"); ok {
		r.recordID = record // the order key is <entity>/<record id>
	} else if !r.groupKey.Valid {
		r.recordID = recordOfBody(m.Body) // a message published without the intake's properties
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

// Publish stores m durably and returns once the transaction holding it is committed and fsynced
// (see write for how concurrent publishes share that fsync). A MessageID already published
// within the duplicate window is accepted and dropped, as Service Bus does; scheduled messages
// count too. A caller whose ctx ends before the commit gets ctx.Err() while its message may
// still land: a retry with the same MessageID is then dropped as a duplicate.
func (q *Queue) Publish(ctx context.Context, m *queue.Message) error {
	_, err := q.PublishReporting(ctx, m)
	return err
}

// PublishReporting is Publish that also says whether m was dropped as a duplicate.
func (q *Queue) PublishReporting(ctx context.Context, m *queue.Message) (duplicate bool, err error) {
	r, err := newRow(m)
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", m.MessageID, err)
	}
	err = q.write(ctx, survivesPowerLoss, func(ctx context.Context, tx *sql.Tx, now int64) error {
		fresh, err := q.insertMessage(ctx, tx, r, now)
		duplicate = !fresh
		return err
	})
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", m.MessageID, err)
	}
	return duplicate, nil
}

var _ queue.DuplicateReporter = (*Queue)(nil)

// insertMessage writes r unless its MessageID was seen within the duplicate window, and says
// whether it did.
func (q *Queue) insertMessage(ctx context.Context, tx *sql.Tx, r row, now int64) (fresh bool, err error) {
	fresh, err = q.remember(ctx, tx, r.messageID, now)
	if err != nil {
		return false, err
	}
	if !fresh {
		// Said at Info because a re-post that "did nothing" is otherwise a mystery (posting the
		// same sample twice, or Dataverse retrying an operation that was already queued).
		q.log.InfoContext(ctx, "duplicate dropped: this MessageID was queued within the duplicate window",
			"messageId", r.messageID)
		return false, nil
	}
	due := max(r.scheduledNS, now)
	// A message due now goes locked to a waiting Receive, if there is one and the message is
	// first of its record (the statement decides that: it leaves a waiting message unlocked).
	var w *waiter
	if due <= now {
		w = q.waiting.claim()
	}
	q.ws.bodies += int64(len(r.body) + len(r.props))
	// Room for the two more that a locked insert takes.
	args := append(make([]any, 0, 12), r.messageID, r.correlationID, r.subject, r.sessionID, r.contentType, r.body, r.props, now, due, r.groupKey)
	if w == nil {
		// No one to hand it to: a plain insert, and a Receive must look for it (at worst one
		// look too many, for a message waiting behind its record's earlier one).
		if _, err := tx.StmtContext(ctx, q.stmts.insertMessage).ExecContext(ctx, args...); err != nil {
			return false, fmt.Errorf("insert %s: %w", r.messageID, err)
		}
		q.ws.freed = true
	} else if err := q.insertLockedFor(ctx, tx, w, r, now, args); err != nil {
		return false, err
	}
	return true, q.recordAccepted(ctx, tx, r, now)
}

// insertMessageSQL takes positional parameters, ?10 the order key: a publish pays an allocation
// for each named one.
func insertMessageSQL() string {
	return `INSERT INTO messages
	(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at, group_key, waiting)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ` + joinsGroup("?10") + `)`
}

// insertLockedFor inserts the message r (its insertMessageSQL arguments args) locked for the
// waiting Receive w, and hands it over after the commit; w is let go if the message waits behind
// its record's earlier event, or if the insert fails.
func (q *Queue) insertLockedFor(ctx context.Context, tx *sql.Tx, w *waiter, r row, now int64, args []any) error {
	token := newLockToken()
	var (
		seq    int64
		behind bool
	)
	args = append(args, token, now+q.opts.LockDuration.Nanoseconds())
	if err := tx.StmtContext(ctx, q.stmts.insertLocked).QueryRowContext(ctx, args...).Scan(&seq, &behind); err != nil {
		q.waiting.unclaim(w)
		return fmt.Errorf("insert %s: %w", r.messageID, err)
	}
	if behind {
		q.waiting.unclaim(w) // it waits behind its record's earlier event: not available yet
	} else {
		q.ws.handoffs = append(q.ws.handoffs, handoff{w: w, m: q.lockedAtInsert(r, seq, token, now)})
	}
	return nil
}

// insertLockedSQL is insertMessageSQL for a message a Receive is waiting for: with the lock
// token ?11 (and its end ?12) a message first of its record is written locked, its first
// delivery counted; one waiting behind an earlier event of its record is never locked. It
// returns the message's sequence number and whether it waits (then it is not locked). A query
// with RETURNING costs more than a plain insert, so it is used only when there is a Receive to
// hand the message to.
func insertLockedSQL() string {
	return `INSERT INTO messages
	(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at, due_at, group_key, waiting,
	 lock_token, locked_until, delivery_count)
	SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, w, iif(w, NULL, ?11), iif(w, 0, ?12), iif(w, 0, 1)
	FROM (SELECT ` + joinsGroup("?10") + ` AS w)
	RETURNING seq, waiting`
}

// DeadLetter parks m directly on the dead-letter queue with a reason and a description, which
// are also written as the DeadLetterReason and DeadLetterErrorDescription application properties.
func (q *Queue) DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error {
	r, err := newRow(m)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	props, err := mergeProps(r.props, deadLetterProps(reason, description))
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.MessageID, err)
	}
	err = q.write(ctx, survivesPowerLoss, func(ctx context.Context, tx *sql.Tx, now int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dead_letters
			(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at,
			 delivery_count, reason, description, dead_lettered_at, group_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)`,
			r.messageID, r.correlationID, r.subject, r.sessionID, r.contentType, r.body, props, now,
			reason, description, now, r.groupKey)
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

// recordOfBody is the record a message's body names, for a message that carries no order key:
// a canonical event's RecordId, or a RemoteExecutionContext's PrimaryEntityId, lower-cased as
// order keys are. Empty when the body names none or is not JSON.
func recordOfBody(body []byte) string {
	var names struct{ RecordId, PrimaryEntityId string }
	if json.Unmarshal(body, &names) != nil {
		return ""
	}
	return strings.ToLower(cmp.Or(names.RecordId, names.PrimaryEntityId))
}
