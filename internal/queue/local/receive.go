package local

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Receive polls between these bounds while it waits for a scheduled message or an expired lock.
// Publishes and abandons wake it at once; the poll only covers what time alone makes available.
const (
	minPoll = 5 * time.Millisecond
	maxPoll = time.Second
)

// Receive waits until at least one message is available, or ctx ends (then it returns ctx.Err()),
// and locks up to maxMessages of them, those due longest first. Each delivery gets a fresh lock
// token and raises the delivery count (1 on the first delivery).
//
// A Receive that finds nothing waits for the writer to hand it the next publish (handoff.go),
// so at a steady rate it never reads the queue: it looks on the read pool only when a change
// may have made a message available that it was not handed (a backlog, a record's next event,
// an abandon or a retry), or when a scheduled message or a lock's end it knows of comes due,
// and hands the locking to the group-commit writer only once something is there to lock.
func (q *Queue) Receive(ctx context.Context, maxMessages int) ([]*queue.Received, error) {
	maxMessages = max(maxMessages, 1)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // never lock for a caller that has gone
		}
		if err := q.checkOpen(); err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		wakeup := q.wakeup()
		recheckAt := q.waiting.recheckAt.Load()
		if q.waiting.stale.Swap(false) || q.nowNS() >= recheckAt {
			got, next, err := q.receiveStored(ctx, maxMessages)
			if err != nil {
				q.waiting.stale.Store(true) // not looked at: the next Receive must look
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("receive: %w", err)
			}
			if len(got) > 0 {
				q.waiting.recheckAt.Store(0) // what is left, and when, is not known: the next Receive looks
				return got, nil
			}
			recheckAt = q.nowNS() + maxPoll.Nanoseconds()
			if next > 0 {
				recheckAt = min(max(next, q.nowNS()+minPoll.Nanoseconds()), recheckAt)
			}
			q.waiting.recheckAt.Store(recheckAt)
		}
		got, err := q.awaitHandoff(ctx, wakeup, maxMessages, time.Duration(recheckAt-q.nowNS()))
		if len(got) > 0 || err != nil {
			return got, err
		}
	}
}

// receiveStored locks up to maxMessages of the messages available on the queue. When there are
// none it returns the time (unix ns) the next one falls due or the next lock ends, 0 if none.
func (q *Queue) receiveStored(ctx context.Context, maxMessages int) ([]*queue.Received, int64, error) {
	next, err := q.nextAvailable(ctx)
	if err != nil || next == 0 || next > q.nowNS() {
		return nil, next, err
	}
	got, err := q.lockAvailable(ctx, maxMessages)
	if err != nil {
		return nil, 0, err
	}
	if len(got) > 0 {
		q.noteReceived(got)
	}
	return got, next, nil
}

// awaitHandoff waits up to wait for the writer to hand over messages, for a wake, or for ctx.
// It returns the messages handed over, none when it stopped waiting without any, and ctx.Err()
// only when ctx ended with nothing handed: messages locked for it are never dropped.
func (q *Queue) awaitHandoff(ctx context.Context, wakeup <-chan struct{}, maxMessages int, wait time.Duration) ([]*queue.Received, error) {
	w := q.waiting.await(ctx, maxMessages)
	timer := time.NewTimer(max(wait, minPoll))
	defer timer.Stop()
	select {
	case <-w.ready:
		return q.handedOver(ctx, w), nil
	case <-ctx.Done():
	case <-q.closing:
	case <-wakeup:
	case <-timer.C:
	}
	if q.waiting.leave(w) {
		return nil, ctx.Err()
	}
	<-w.ready // the writer has locked messages for it: they are its to take
	return q.handedOver(ctx, w), nil
}

// handedOver decodes the messages handed to w as lockAvailable decodes the ones it locks.
func (q *Queue) handedOver(ctx context.Context, w *waiter) []*queue.Received {
	got, err := q.decodeLocked(ctx, w.got)
	if err != nil {
		q.log.ErrorContext(ctx, "receive: a message handed over could not be dead-lettered as damaged", "error", err)
	}
	if len(got) > 0 {
		q.noteReceived(got)
	}
	return got
}

// The hot statements of the receive path. Each is answered from an index, whatever the backlog
// (TestHot_statements_are_answered_from_an_index checks their query plans).
const (
	// lockExpired matches the locks that ran out by @now, from the partial index messages_locked.
	lockExpired = `lock_token IS NOT NULL AND locked_until <= @now`
	// lockExhausted matches the expired locks of messages that have had all their deliveries.
	lockExhausted = lockExpired + ` AND delivery_count >= @max`

	releaseExpiredSQL  = `UPDATE messages SET lock_token = NULL, locked_until = 0 WHERE ` + lockExpired
	deleteExhaustedSQL = `DELETE FROM messages WHERE ` + lockExhausted

	// nextAvailableSQL answers when the next message a receive may take falls due and when the
	// next lock runs out: each is the first entry of a partial index (messages_ready_heads,
	// messages_locked), so the answer costs the same however many messages are held locked or
	// wait behind an earlier message of their record.
	nextAvailableSQL = `SELECT
		(SELECT MIN(due_at) FROM messages INDEXED BY messages_ready_heads WHERE lock_token IS NULL AND waiting = 0),
		(SELECT MIN(locked_until) FROM messages WHERE lock_token IS NOT NULL)`

	// lockDueSQL casts its LIMIT because SQLite plans with the value of a bare LIMIT parameter
	// and so parses the statement again whenever the value changes.
	lockDueSQL = `UPDATE messages
		SET lock_token = lower(hex(randomblob(16))), locked_until = @until, delivery_count = delivery_count + 1
		WHERE seq IN (
			SELECT seq FROM messages INDEXED BY messages_ready_heads WHERE due_at <= @now AND lock_token IS NULL AND waiting = 0
			ORDER BY due_at, seq LIMIT CAST(@limit AS INTEGER))
		RETURNING seq, message_id, correlation_id, subject, session_id, content_type, body, props,
			enqueued_at, due_at, delivery_count, lock_token`
)

// nextAvailable returns the time (unix ns) at which a message is or next becomes available: the
// due time of the oldest unlocked message or the end of the earliest lock, whichever is first;
// 0 when the queue is empty. It reads without waiting for the writer.
func (q *Queue) nextAvailable(ctx context.Context) (int64, error) {
	return read(ctx, q, func(ctx context.Context, _ *sql.DB) (int64, error) {
		var nextDue, nextExpiry sql.NullInt64
		if err := q.stmts.nextAvailable.QueryRowContext(ctx).Scan(&nextDue, &nextExpiry); err != nil {
			return 0, fmt.Errorf("find next due time: %w", err)
		}
		return earliest(nextDue, nextExpiry), nil
	})
}

// lockAvailable locks up to maxMessages available messages through the group-commit writer,
// after ending the locks that ran out. It waits for the writer's answer even if ctx ends
// meanwhile: the writer checks ctx before it locks anything, and a lock that did land must reach
// the receiver, or its message would sit out a whole lock duration with a delivery counted.
//
// The messages' application properties are decoded here, after the commit, rather than inside
// it: the writer is what every publish waits for, and decoding is work any goroutine can do.
func (q *Queue) lockAvailable(ctx context.Context, maxMessages int) ([]*queue.Received, error) {
	var locked []lockedMessage
	done, err := q.submit(ctx, survivesProcessCrash, func(txCtx context.Context, tx *sql.Tx, now int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if locked, err = q.lockDue(txCtx, tx, now, maxMessages); err != nil {
			locked = nil
		}
		// A full receive may have left more behind, and expired locks may have been released:
		// the other receivers look too.
		q.ws.freed = q.ws.freed || len(locked) == maxMessages
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := <-done; err != nil {
		return nil, err
	}
	got, err := q.decodeLocked(ctx, locked)
	if len(got) == 0 && err != nil {
		return nil, err
	}
	return got, nil
}

// decodeLocked decodes the application properties of the messages locked for a receiver.
//
// Only a damaged file fails to decode (the queue wrote the properties itself). Such a message is
// dead-lettered at once as damaged (deadLetterDamaged): it must not stop every receive, nor hold
// back the sound messages locked beside it, so those are handed out; the error is the failed
// dead-lettering's, for a receive that got nothing else.
func (q *Queue) decodeLocked(ctx context.Context, locked []lockedMessage) ([]*queue.Received, error) {
	got := make([]*queue.Received, 0, len(locked))
	var damaged error
	for _, m := range locked {
		var err error
		if m.ApplicationProperties, err = decodeProps(m.props); err != nil {
			if err := q.deadLetterDamaged(ctx, m.Received, err); err != nil {
				damaged = err
			}
			continue
		}
		got = append(got, m.Received)
	}
	return got, damaged
}

// lockedMessage is a message lockDue locked, with what the writer leaves to the receiver.
type lockedMessage struct {
	*queue.Received
	props string // application properties, still encoded
	dueAt int64  // unix ns
}

// lockDue ends the expired locks and locks up to maxMessages due messages, in the order they fall due.
func (q *Queue) lockDue(ctx context.Context, tx *sql.Tx, now int64, maxMessages int) ([]lockedMessage, error) {
	if err := q.expireLocks(ctx, tx, now); err != nil {
		return nil, err
	}
	lockedUntil := now + q.opts.LockDuration.Nanoseconds()
	rows, err := tx.StmtContext(ctx, q.stmts.lockDue).QueryContext(ctx,
		sql.Named("until", lockedUntil), sql.Named("now", now), sql.Named("limit", maxMessages))
	if err != nil {
		return nil, fmt.Errorf("lock messages: %w", err)
	}
	defer rows.Close()
	var got []lockedMessage
	for rows.Next() {
		var (
			m        = lockedMessage{Received: &queue.Received{}}
			r        = m.Received
			enqueued int64
		)
		if err := rows.Scan(&r.SequenceNumber, &r.MessageID, &r.CorrelationID, &r.Subject, &r.SessionID,
			&r.ContentType, &r.Body, &m.props, &enqueued, &m.dueAt, &r.DeliveryCount, &r.LockToken); err != nil {
			return nil, fmt.Errorf("read locked message: %w", err)
		}
		r.EnqueuedTime = fromNS(enqueued)
		r.LockedUntil = fromNS(lockedUntil)
		got = append(got, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read locked messages: %w", err)
	}
	// RETURNING gives no order; hand messages out in the order they were picked.
	slices.SortFunc(got, func(a, b lockedMessage) int {
		if d := a.dueAt - b.dueAt; d != 0 {
			return sign(d)
		}
		return sign(a.SequenceNumber - b.SequenceNumber)
	})
	return got, nil
}

func sign(d int64) int {
	switch {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

func earliest(a, b sql.NullInt64) int64 {
	switch {
	case a.Valid && b.Valid:
		return min(a.Int64, b.Int64)
	case a.Valid:
		return a.Int64
	case b.Valid:
		return b.Int64
	}
	return 0
}

// expireLocks ends the locks that ran out by now: a message delivered MaxDeliveryCount times is
// dead-lettered, the others become available again (their count already includes the lost delivery).
func (q *Queue) expireLocks(ctx context.Context, tx *sql.Tx, now int64) error {
	// moveToDeadLetter's statements, prepared: this runs before every lock a Receive takes.
	res, err := tx.StmtContext(ctx, q.stmts.copyExhausted).ExecContext(ctx, sql.Named("now", now),
		sql.Named("max", q.opts.MaxDeliveryCount), sql.Named("reason", queue.ReasonMaxDeliveryCountExceeded), sql.Named("props", "{}"))
	if err != nil {
		return fmt.Errorf("dead-letter exhausted messages: %w", err)
	}
	moved, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("dead-letter exhausted messages: %w", err)
	}
	if moved > 0 {
		if _, err := tx.StmtContext(ctx, q.stmts.deleteExhausted).ExecContext(ctx,
			sql.Named("now", now), sql.Named("max", q.opts.MaxDeliveryCount)); err != nil {
			return fmt.Errorf("dead-letter exhausted messages: %w", err)
		}
	}
	res, err = tx.StmtContext(ctx, q.stmts.releaseExpired).ExecContext(ctx, sql.Named("now", now))
	if err != nil {
		return fmt.Errorf("release expired locks: %w", err)
	}
	if released, err := res.RowsAffected(); err != nil || released > 0 || moved > 0 {
		q.ws.freed = true // released messages, and records whose dead-lettered head let the next go
	}
	return nil
}

// moveToDeadLetter moves the messages matching where (which may use @now) to the dead-letter
// queue. A nil reason means MaxDeliveryCountExceeded with Service Bus's description.
func (q *Queue) moveToDeadLetter(ctx context.Context, tx *sql.Tx, where string, now int64, args ...any) (int64, error) {
	return q.moveToDeadLetterWith(ctx, tx, where, now, nil, args...)
}

// deadLetterReason is why messages are dead-lettered; props (encoded, "{}" when none) are merged
// into their application properties.
type deadLetterReason struct{ reason, description, props string }

func (q *Queue) moveToDeadLetterWith(ctx context.Context, tx *sql.Tx, where string, now int64, reason *deadLetterReason, args ...any) (int64, error) {
	counted := reason == nil
	if counted {
		reason = &deadLetterReason{reason: queue.ReasonMaxDeliveryCountExceeded}
	}
	if reason.props == "" {
		reason.props = "{}"
	}
	args = append(args, sql.Named("now", now), sql.Named("reason", reason.reason), sql.Named("description", reason.description),
		sql.Named("props", reason.props))
	res, err := tx.ExecContext(ctx, deadLetterCopySQL(where, counted), args...)
	if err != nil {
		return 0, err
	}
	moved, err := res.RowsAffected()
	if err != nil || moved == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE `+where, args...); err != nil {
		return 0, err
	}
	return moved, nil
}

// deadLetterCopySQL copies the messages matching where to the dead-letter queue, in sequence
// order, with @reason, @props merged into their properties, and either @description or, when countedDescription is set, Service Bus's
// "could not be consumed after n delivery attempts".
//
// The copy orders by +seq, not seq: a bare seq would let SQLite satisfy the ORDER BY by walking
// the whole table in rowid order instead of finding the few matching rows by index and sorting them.
func deadLetterCopySQL(where string, countedDescription bool) string {
	descSQL := `@description`
	if countedDescription {
		descSQL = `'Message could not be consumed after ' || delivery_count || ' delivery attempts.'`
	}
	// A message whose stored properties no longer parse (a damaged file) is still moved, with
	// only the dead-letter properties: json_patch would fail the statement, and with it every
	// receive that ends expired locks.
	return `INSERT INTO dead_letters
		(message_id, correlation_id, subject, session_id, content_type, body, props, enqueued_at,
		 delivery_count, reason, description, dead_lettered_at, group_key, queued_seq)
		SELECT message_id, correlation_id, subject, session_id, content_type, body,
			json_set(json_patch(iif(json_valid(props), props, '{}'), @props), '$.` + queue.PropDeadLetterReason + `', @reason,
				'$.` + queue.PropDeadLetterErrorDescription + `', ` + descSQL + `),
			enqueued_at, delivery_count, @reason, ` + descSQL + `, @now, group_key, seq
		FROM messages WHERE ` + where + ` ORDER BY +seq`
}

// checkLockSQL counts 1 when a settlement's lock is still held: the caller's (?1 its sequence
// number, ?2 its token) and still running at ?3. Positional parameters: it runs on every
// settlement, and a named one costs an allocation.
const checkLockSQL = `SELECT COUNT(*) FROM messages WHERE seq = ?1 AND lock_token = ?2 AND locked_until > ?3`

// settle applies fn through the group-commit writer after checking that r's lock is still held.
func (q *Queue) settle(ctx context.Context, op string, r *queue.Received, fn func(ctx context.Context, tx *sql.Tx, now int64) error) error {
	err := q.write(ctx, survivesProcessCrash, func(ctx context.Context, tx *sql.Tx, now int64) error {
		var held int
		if err := tx.StmtContext(ctx, q.stmts.checkLock).QueryRowContext(ctx, r.SequenceNumber, r.LockToken, now).Scan(&held); err != nil {
			return fmt.Errorf("check lock: %w", err)
		}
		if held == 0 {
			return queue.ErrLockLost
		}
		return fn(ctx, tx, now)
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, r.MessageID, err)
	}
	return nil
}

// Complete removes r from the queue and hands its order key to the next message of its record;
// dead letters of the record queued before it learn that a newer event completed.
func (q *Queue) Complete(ctx context.Context, r *queue.Received) error {
	return q.settle(ctx, "complete", r, q.completeIn(r))
}

// completeIn is Complete's change, applied once r's lock is known to be held.
func (q *Queue) completeIn(r *queue.Received) func(ctx context.Context, tx *sql.Tx, now int64) error {
	return func(ctx context.Context, tx *sql.Tx, now int64) error {
		if _, err := tx.StmtContext(ctx, q.stmts.markNewer).ExecContext(ctx, r.SequenceNumber, now); err != nil {
			return fmt.Errorf("mark older dead letters: %w", err)
		}
		// The delete hands the order key to the record's next event, if one waits; that one
		// no Receive was handed, so they must look. With a Receive waiting, the delete says
		// whether it let one go; with none, the next Receive looks anyway (a query with
		// RETURNING costs more than the plain delete).
		if !q.waiting.any() {
			q.ws.freed = true
			_, err := tx.StmtContext(ctx, q.stmts.deleteMessage).ExecContext(ctx, r.SequenceNumber)
			return err
		}
		var released bool
		if err := tx.StmtContext(ctx, q.stmts.complete).QueryRowContext(ctx, r.SequenceNumber).Scan(&released); err != nil {
			return err
		}
		q.ws.freed = q.ws.freed || released
		return nil
	}
}

// Abandon releases r's lock at once. Its delivery count stays raised; once it has been delivered
// MaxDeliveryCount times it goes to the dead-letter queue with reason MaxDeliveryCountExceeded.
func (q *Queue) Abandon(ctx context.Context, r *queue.Received) error {
	err := q.settle(ctx, "abandon", r, func(ctx context.Context, tx *sql.Tx, now int64) error {
		q.ws.freed = true
		moved, err := q.moveToDeadLetter(ctx, tx, `seq = @seq AND delivery_count >= @max`, now,
			sql.Named("seq", r.SequenceNumber), sql.Named("max", q.opts.MaxDeliveryCount))
		if err != nil || moved > 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE messages SET lock_token = NULL, locked_until = 0 WHERE seq = ?`, r.SequenceNumber)
		return err
	})
	return err
}

// Reschedule settles r and makes it due again at `at` as a fresh delivery chain, in place: the
// same row and sequence number, so the message keeps its place among its record's events and
// holds its order key through the back-off, with the delivery count back to zero, props merged
// into its application properties, and the MessageID and Attempt of a retry (queue.RetryID,
// queue.RetryAttempt). It is the embedded queue's form of Service Bus's "schedule a copy, then
// complete", without the copy that would join the tail.
func (q *Queue) Reschedule(ctx context.Context, r *queue.Received, at time.Time, props map[string]any) error {
	if _, err := encodeProps(props); err != nil {
		return fmt.Errorf("reschedule %s: %w", r.MessageID, err)
	}
	return q.settle(ctx, "reschedule", r, q.rescheduleIn(r, at, props))
}

// rescheduleIn is Reschedule's change, applied once r's lock is known to be held.
func (q *Queue) rescheduleIn(r *queue.Received, at time.Time, props map[string]any) func(ctx context.Context, tx *sql.Tx, now int64) error {
	return func(ctx context.Context, tx *sql.Tx, now int64) error {
		q.ws.freed = true // due again later: Receives learn when
		var id, stored string
		if err := tx.QueryRowContext(ctx, `SELECT message_id, props FROM messages WHERE seq = ?`, r.SequenceNumber).Scan(&id, &stored); err != nil {
			return fmt.Errorf("read properties: %w", err)
		}
		merged, err := decodeProps(stored)
		if err != nil {
			return err
		}
		attempt := queue.RetryAttempt(merged, props)
		maps.Copy(merged, props)
		merged[queue.PropAttempt] = int64(attempt)
		encoded, err := encodeProps(merged)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET message_id = ?, props = ?, due_at = ?,
				delivery_count = 0, lock_token = NULL, locked_until = 0 WHERE seq = ?`,
			queue.RetryID(id, attempt), encoded, max(at.UnixNano(), now), r.SequenceNumber); err != nil {
			return fmt.Errorf("retry in place: %w", err)
		}
		return nil
	}
}

// DeadLetterReceived moves r to the dead-letter queue with a reason and a description, which are
// also written as the DeadLetterReason and DeadLetterErrorDescription application properties.
func (q *Queue) DeadLetterReceived(ctx context.Context, r *queue.Received, reason, description string) error {
	return q.deadLetterReceived(ctx, r, &deadLetterReason{reason: reason, description: description})
}

func (q *Queue) deadLetterReceived(ctx context.Context, r *queue.Received, why *deadLetterReason) error {
	return q.settle(ctx, "dead-letter", r, q.deadLetterIn(r, why))
}

// deadLetterIn is deadLetterReceived's change, applied once r's lock is known to be held.
func (q *Queue) deadLetterIn(r *queue.Received, why *deadLetterReason) func(ctx context.Context, tx *sql.Tx, now int64) error {
	return func(ctx context.Context, tx *sql.Tx, now int64) error {
		q.ws.freed = true // the record's next event may go
		_, err := q.moveToDeadLetterWith(ctx, tx, `seq = @seq`, now, why, sql.Named("seq", r.SequenceNumber))
		return err
	}
}

// RenewLock extends r's lock by the lock duration from now and updates r.LockedUntil.
func (q *Queue) RenewLock(ctx context.Context, r *queue.Received) error {
	var until int64
	err := q.settle(ctx, "renew lock", r, func(ctx context.Context, tx *sql.Tx, now int64) error {
		until = now + q.opts.LockDuration.Nanoseconds()
		_, err := tx.ExecContext(ctx, `UPDATE messages SET locked_until = ? WHERE seq = ?`, until, r.SequenceNumber)
		return err
	})
	if err != nil {
		return err
	}
	r.LockedUntil = fromNS(until)
	return nil
}

// completeSQL deletes a completed message and says whether its record has another event on the
// queue, which the delete lets go (the trigger messages_release_group): an index seek on
// messages_group. It asks for any other message of the key, not for a waiting one, so the
// answer is the same whether SQLite evaluates it before or after the trigger.
const completeSQL = `DELETE FROM messages WHERE seq = ?1
	RETURNING group_key IS NOT NULL AND EXISTS (SELECT 1 FROM messages AS m WHERE m.group_key = messages.group_key AND m.seq <> ?1)`
