package local

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// defaultStatsTimeout bounds Stats for a caller that set no deadline: a health check must
// answer, and a stalled disk would otherwise hold it for as long as the stall lasts.
const defaultStatsTimeout = 2 * time.Second

// statsSQL counts from indexes alone, in one snapshot. A locked message counts as queued; so
// does one whose lock ran out, unless that was its last delivery: the next Receive moves it to
// the dead-letter queue, and Stats counts it there already rather than write anything itself.
// Locked messages with a due time still ahead only exist when the clock stepped back.
const statsSQL = `SELECT
	(SELECT COUNT(*) FROM messages WHERE due_at <= @now),
	(SELECT COUNT(*) FROM messages WHERE due_at > @now),
	(SELECT COUNT(*) FROM messages INDEXED BY messages_locked WHERE lock_token IS NOT NULL AND due_at > @now),
	(SELECT COUNT(*) FROM messages WHERE ` + lockExhausted + `),
	(SELECT MIN(due_at) FROM messages WHERE due_at <= @now AND NOT (` + lockExhausted + `)),
	(SELECT COUNT(*) FROM dead_letters)`

// Stats counts the messages by state. It reads on the read pool, so a busy writer does not hold
// it up, and it answers by ctx's deadline (defaultStatsTimeout when ctx has none) with an error
// wrapping context.DeadlineExceeded when the database cannot be read in time.
func (q *Queue) Stats(ctx context.Context) (queue.Stats, error) {
	if err := q.checkOpen(); err != nil {
		return queue.Stats{}, fmt.Errorf("queue stats: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStatsTimeout)
		defer cancel()
	}
	s, err := read(ctx, q, func(ctx context.Context, db *sql.DB) (queue.Stats, error) {
		now := q.nowNS()
		var (
			due, ahead, lockedAhead, exhausted, deadLettered int
			oldest                                           sql.NullInt64
		)
		if err := db.QueryRowContext(ctx, statsSQL, sql.Named("now", now), sql.Named("max", q.opts.MaxDeliveryCount)).
			Scan(&due, &ahead, &lockedAhead, &exhausted, &oldest, &deadLettered); err != nil {
			return queue.Stats{}, err
		}
		s := queue.Stats{
			Queued:       due + lockedAhead - exhausted,
			Scheduled:    ahead - lockedAhead,
			DeadLettered: deadLettered + exhausted,
		}
		if oldest.Valid {
			s.OldestQueuedAge = time.Duration(now - oldest.Int64)
		}
		return s, nil
	})
	if err != nil {
		return queue.Stats{}, fmt.Errorf("queue stats: %w", err)
	}
	return s, nil
}
