package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Per-record order. Every message carries its order key (queue.OrderKey) in group_key, and
// waiting is 1 while an earlier message of the key is still on the queue: locked, waiting for
// its next attempt, or due. Receive hands out only messages with waiting = 0 (the partial index
// messages_ready_heads holds exactly those that are unlocked), so it never steps over a
// record's later events, however many wait. A retry keeps the message's row and sequence number
// (Reschedule), so the key stays held for the back-off; a message that leaves the queue hands
// the key on (the trigger messages_release_group); a resubmitted message is inserted anew and
// so joins the tail of its key.

// joinsGroup is the waiting flag of a message of the key in parameter key, inserted now: every
// message already on the queue came before it.
func joinsGroup(key string) string {
	return `(` + key + ` IS NOT NULL AND EXISTS (SELECT 1 FROM messages WHERE group_key = ` + key + `))`
}

// releaseGroupSQL, run by the trigger messages_release_group when a key's first message leaves
// the queue, lets the next message of the key be received: an index seek on messages_group.
const releaseGroupSQL = `UPDATE messages SET waiting = 0
	WHERE seq = (SELECT MIN(seq) FROM messages WHERE group_key = old.group_key)`

// groupKey is the value stored in group_key for a message's properties: NULL when it has no key.
func groupKey(props map[string]any) sql.NullString {
	k := queue.OrderKeyOf(props)
	return sql.NullString{String: k, Valid: k != ""}
}

// storedOrderKey is the order key of a message written before keys were stored: its
// OrderKey property, or else the record its canonical event names.
func storedOrderKey(props string, body []byte) sql.NullString {
	if p, err := decodeProps(props); err == nil {
		if k := groupKey(p); k.Valid {
			return k
		}
	}
	var ev struct {
		Entity   string `json:"Entity"`
		RecordID string `json:"RecordId"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return sql.NullString{}
	}
	k := queue.OrderKey(ev.Entity, ev.RecordID)
	return sql.NullString{String: k, Valid: k != ""}
}

// migrateToOrderKeys brings a data directory of schema version 1 to per-record order: it adds
// the key columns, gives every stored message the key of the record it carries, and marks the
// later messages of each key as waiting, so order holds from the first receive after the upgrade.
func (q *Queue) migrateToOrderKeys(ctx context.Context) error {
	return q.inTx(ctx, survivesPowerLoss, func(tx *sql.Tx) error {
		for _, stmt := range []string{
			`ALTER TABLE messages ADD COLUMN group_key TEXT`,
			`ALTER TABLE messages ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE dead_letters ADD COLUMN group_key TEXT`,
			`ALTER TABLE dead_letters ADD COLUMN queued_seq INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE dead_letters ADD COLUMN newer_message_id TEXT`,
			`ALTER TABLE dead_letters ADD COLUMN newer_at INTEGER`,
			`DROP INDEX IF EXISTS messages_ready`,
			`CREATE INDEX IF NOT EXISTS messages_group ON messages (group_key, seq) WHERE group_key IS NOT NULL`,
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		for _, table := range []string{"messages", "dead_letters"} {
			if err := backfillOrderKeys(ctx, tx, table); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE messages SET waiting = 1 WHERE group_key IS NOT NULL
			AND EXISTS (SELECT 1 FROM messages p WHERE p.group_key = messages.group_key AND p.seq < messages.seq)`)
		if err != nil {
			return fmt.Errorf("mark waiting messages: %w", err)
		}
		return nil
	})
}

func backfillOrderKeys(ctx context.Context, tx *sql.Tx, table string) error {
	rows, err := tx.QueryContext(ctx, `SELECT seq, props, body FROM `+table)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	type keyed struct {
		seq int64
		key sql.NullString
	}
	var keys []keyed
	for rows.Next() {
		var (
			seq   int64
			props string
			body  []byte
		)
		if err := rows.Scan(&seq, &props, &body); err != nil {
			_ = rows.Close()
			return fmt.Errorf("read %s: %w", table, err)
		}
		if k := storedOrderKey(props, body); k.Valid {
			keys = append(keys, keyed{seq, k})
		}
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET group_key = ? WHERE seq = ?`, k.key, k.seq); err != nil {
			return fmt.Errorf("key %s %d: %w", table, k.seq, err)
		}
	}
	return nil
}

// markNewerSQL runs before message ?1 is deleted as completed at ?2: the dead letters of its
// record queued before it are marked as older than a completed event. It is an index probe on
// dead_letters_group that finds nothing for almost every completion (dead letters are rare),
// which costs less than remembering every record's completions. Positional parameters: this
// runs on every Complete, and named ones cost an allocation each.
const markNewerSQL = `UPDATE dead_letters SET newer_message_id = m.message_id, newer_at = ?2
	FROM (SELECT group_key, message_id FROM messages WHERE seq = ?1 AND group_key IS NOT NULL) AS m
	WHERE dead_letters.group_key = m.group_key AND dead_letters.queued_seq < ?1`

// LaterCompletion reports whether an event of the same record as dead letter seq completed
// after it was queued: replaying the dead letter would then apply older data over newer. ok is
// false when none did, or the dead letter names no record.
func (q *Queue) LaterCompletion(ctx context.Context, seq int64) (c queue.Completion, ok bool, err error) {
	if err := q.checkOpen(); err != nil {
		return c, false, fmt.Errorf("later completions of dead letter %d: %w", seq, err)
	}
	type result struct {
		c  queue.Completion
		ok bool
	}
	r, err := read(ctx, q, func(ctx context.Context, db *sql.DB) (result, error) {
		var (
			key, newer sql.NullString
			at         sql.NullInt64
		)
		err := db.QueryRowContext(ctx, `SELECT group_key, newer_message_id, newer_at FROM dead_letters WHERE seq = ?`, seq).
			Scan(&key, &newer, &at)
		if err == sql.ErrNoRows {
			return result{}, queue.ErrNotFound
		}
		if err != nil || !newer.Valid {
			return result{}, err
		}
		return result{queue.Completion{OrderKey: key.String, MessageID: newer.String, At: fromNS(at.Int64)}, true}, nil
	})
	if err != nil {
		return c, false, fmt.Errorf("later completions of dead letter %d: %w", seq, err)
	}
	return r.c, r.ok, nil
}
