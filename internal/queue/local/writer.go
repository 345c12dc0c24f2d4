package local

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// defaultMaxBatch caps one group commit so a flood of writers cannot hold the single connection
// (and with it every lock a Receive waits to take) for long.
const defaultMaxBatch = 256

// writeRequest is one caller's change, waiting for the writer.
type writeRequest struct {
	ctx        context.Context
	durability durability
	apply      func(ctx context.Context, tx *sql.Tx, now int64) error
	done       chan error // buffered: the writer never waits for a caller that gave up
}

// write applies one change: it returns once the transaction holding it is committed with at
// least durability d (fsynced, for survivesPowerLoss), or with the change's own error (and
// nothing of it written).
//
// Group commit: an fsync costs far more than the SQL around it, so publishes, settlements,
// dead-letters and receive locks do not commit on their own. write hands the change to the
// single writer goroutine, which takes every change waiting at that moment (up to
// defaultMaxBatch), applies each inside its own savepoint (so one change failing, say with
// ErrLockLost, rolls back only itself), commits them all at once, with one fsync unless every
// change in the batch is survivesProcessCrash, and then answers each caller. Under concurrency
// the callers share the fsync; a lone durable caller pays exactly one, with no timer holding it
// back. A caller whose ctx ends first gets ctx.Err(); its change may still land.
func (q *Queue) write(ctx context.Context, d durability, apply func(ctx context.Context, tx *sql.Tx, now int64) error) error {
	done, err := q.submit(ctx, d, apply)
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit hands a change to the writer and returns the channel that carries its outcome. The
// writer answers every change it has taken, so waiting on that channel alone is safe: it is what
// a caller does whose change must not land unseen (see lockAvailable).
func (q *Queue) submit(ctx context.Context, d durability, apply func(ctx context.Context, tx *sql.Tx, now int64) error) (<-chan error, error) {
	req := &writeRequest{ctx: ctx, durability: d, apply: apply, done: make(chan error, 1)}
	select {
	case q.writes <- req:
		return req.done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.closing:
		return nil, ErrClosed
	}
}

// While publishes arrive (the last one within publishesFlowing), a sweep of locks and
// settlements alone waits up to settleLinger for the next publish and rides in its commit.
//
// At a moderate rate each event otherwise costs the writer two commits, the publish's and its
// completion's, a millisecond or two apart, and a commit's cost is mostly fixed: every page it
// touched is written to the log whole, the hot ones (the queue's tail, its heads, the duplicate
// ids' newest) again by each commit. Sharing halves that. A settlement's caller is the worker's
// settling goroutine, not the worker, so the wait costs no processing; with no publishes
// coming (a backlog drained, a quiet queue) nothing waits.
const (
	settleLinger     = 2 * time.Millisecond
	publishesFlowing = 20 * time.Millisecond
)

// writer is the only goroutine that commits through write. It stops when the queue closes; it
// never leaves a request it has taken unanswered.
func (q *Queue) writer() {
	defer close(q.writerDone)
	batch := make([]*writeRequest, 0, q.opts.maxBatch)
	var lastPublish time.Time // real time: lingering is about the machine, not the queue's clock
	// lingering is off from a wait that no publish ended until the next publish: when a burst of
	// publishes stops, the worker draining what it left pays for one wait, not for every sweep.
	lingering := true
	for {
		select {
		case <-q.closing:
			return
		case req := <-q.writes:
			batch = append(batch[:0], req)
		}
		batch = q.drain(batch)
		together := false
		published := slices.ContainsFunc(batch, wantsFsync)
		if lingering && !published && time.Since(lastPublish) < publishesFlowing {
			// linger reports whether a publish came, which then rides in the same commit.
			batch, together = q.linger(batch)
			lingering, published = together, together
		}
		if published {
			lastPublish, lingering = time.Now(), true
		}
		q.commitSweep(dropAbandoned(batch), together)
		clear(batch)
	}
}

func wantsFsync(req *writeRequest) bool { return req.durability == survivesPowerLoss }

// drain adds every change waiting at this moment to batch, up to the batch cap.
func (q *Queue) drain(batch []*writeRequest) []*writeRequest {
	for len(batch) < q.opts.maxBatch {
		select {
		case req := <-q.writes:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// linger waits up to settleLinger for a publish, taking every change that arrives meanwhile. It
// reports whether a publish came: the batch is then committed as one transaction.
func (q *Queue) linger(batch []*writeRequest) ([]*writeRequest, bool) {
	timer := time.NewTimer(settleLinger)
	defer timer.Stop()
	for len(batch) < q.opts.maxBatch {
		select {
		case req := <-q.writes:
			batch = append(batch, req)
			if wantsFsync(req) {
				return q.drain(batch), true
			}
		case <-timer.C:
			return batch, false
		case <-q.closing:
			return batch, false
		}
	}
	return batch, false
}

// commitSweep commits the changes the writer took in one sweep and answers their callers.
//
// Unless the locks and settlements waited for a publish to share its commit (together), the
// changes that want an fsync (publishes: a caller at the intake is waiting for its 202) are
// committed first, in a transaction of their own; the receive locks and settlements of the same
// sweep follow in a second one, which costs no fsync. Mixed into one, the worker's SQL would run
// ahead of every publish's fsync and lengthen the intake's wait by as much. Reordering is safe:
// no caller in a sweep has been answered, so none of its changes can depend on another's.
func (q *Queue) commitSweep(batch []*writeRequest, together bool) {
	if together {
		q.commitAndAnswer(batch)
		return
	}
	slices.SortStableFunc(batch, func(a, b *writeRequest) int { return cmp.Compare(a.durability, b.durability) })
	split := slices.IndexFunc(batch, func(req *writeRequest) bool { return req.durability != survivesPowerLoss })
	if split < 0 {
		split = len(batch)
	}
	q.commitAndAnswer(batch[:split])
	q.commitAndAnswer(batch[split:])
}

// commitAndAnswer commits batch (if it holds anything) and answers each of its callers.
func (q *Queue) commitAndAnswer(batch []*writeRequest) {
	if len(batch) == 0 {
		return
	}
	// A failed commit is not logged here: every caller gets the error and logs it where a flood
	// of them is bounded (the intake's refusal lines, at most 10 a second per outcome; the
	// consumer's settle errors). A line here would be one per publish on a full disk.
	errs, err := q.commitBatch(batch)
	for i, req := range batch {
		req.done <- errors.Join(errs[i], err)
	}
}

// dropAbandoned answers the requests whose caller has already given up and returns the rest:
// there is no one left to tell whether such a change landed.
func dropAbandoned(batch []*writeRequest) []*writeRequest {
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

// commitBatch applies every request in one transaction, as durable as its most demanding
// request. errs[i] is request i's own error; err is the transaction's, which every request
// shares.
//
// One change failing must not undo the others, yet a savepoint around every change costs the
// writer two statements and a copy of every page the change touches. So the batch runs bare
// first: a change that fails before it wrote anything (wroteNothing) simply drops out; should one
// fail having perhaps written something, the whole transaction is rolled back and the batch
// applied again with each change in its own savepoint.
func (q *Queue) commitBatch(batch []*writeRequest) (errs []error, err error) {
	d := survivesProcessCrash
	for _, req := range batch {
		d = strongest(d, req.durability)
	}
	errs, err = q.applyBatch(batch, d, false)
	if errors.Is(err, errIsolate) {
		q.rollBackHandoffs(0)
		q.rollBackIDs(0)
		errs, err = q.applyBatch(batch, d, true)
	}
	if err == nil {
		if q.opts.committed != nil {
			q.opts.committed(d)
		}
		if q.ckpt != nil { // nil before Open has finished
			q.ckpt.committed(loggedBy(len(batch), q.ws.bodies))
		}
	}
	q.endBatch(err)
	return errs, err
}

// errIsolate ends a bare pass of applyBatch whose change failed part-way.
var errIsolate = errors.New("a change failed after it may have written: apply each in a savepoint")

// wroteNothing reports whether a change's error is one the change returns before it writes:
// a settlement whose lock ran out, a receive whose caller has gone.
func wroteNothing(err error) bool {
	return errors.Is(err, queue.ErrLockLost) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// applyBatch applies batch in one transaction committed with durability d; isolated puts each
// change in a savepoint of its own.
func (q *Queue) applyBatch(batch []*writeRequest, d durability, isolated bool) (errs []error, err error) {
	// The batch belongs to many callers, so no single caller's ctx may abort it.
	ctx := context.Background()
	errs = make([]error, len(batch))
	err = q.inTx(ctx, d, func(tx *sql.Tx) error {
		now := q.nowNS()
		// Old message ids matter to publishes alone (remember takes an expired one as new), so
		// they are forgotten in the commits that carry publishes, not on the worker's path.
		if d == survivesPowerLoss {
			if err := q.forgetExpiredIDs(ctx, tx, now); err != nil {
				return err
			}
		}
		for i, req := range batch {
			var fatal error
			if errs[i], fatal = q.applyOne(ctx, tx, req, now, isolated); fatal != nil {
				return fatal
			}
			if errs[i] != nil && !wroteNothing(errs[i]) && !isolated {
				return errIsolate
			}
		}
		return nil
	})
	return errs, err
}

// applyOne applies one change and returns its error; isolated, inside a savepoint that its
// failure rolls back. fatal is an error of the savepoint itself, which ends the transaction.
func (q *Queue) applyOne(ctx context.Context, tx *sql.Tx, req *writeRequest, now int64, isolated bool) (err, fatal error) {
	if isolated {
		if _, err := tx.StmtContext(ctx, q.stmts.savepoint).ExecContext(ctx); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
	}
	handed, remembered := len(q.ws.handoffs), len(q.ws.ids)
	if err = req.apply(ctx, tx, now); err != nil {
		q.rollBackHandoffs(handed)
		q.rollBackIDs(remembered)
	}
	if !isolated {
		return err, nil
	}
	if err != nil {
		if _, rbErr := tx.StmtContext(ctx, q.stmts.rollbackTo).ExecContext(ctx); rbErr != nil {
			return err, fmt.Errorf("roll back a failed change: %w", rbErr)
		}
	}
	if _, relErr := tx.StmtContext(ctx, q.stmts.release).ExecContext(ctx); relErr != nil {
		return err, fmt.Errorf("release savepoint: %w", relErr)
	}
	return err, nil
}

// endBatch tells the Receives what a group commit changed: the messages locked for waiters go to
// them, and a change that may have made a message available that no one was handed wakes every
// Receive to look. A failed commit wrote nothing: its waiters keep waiting.
func (q *Queue) endBatch(err error) {
	q.ws.bodies = 0
	q.indexCommittedIDs(err)
	q.handOver(err)
	freed := q.ws.freed && err == nil
	q.ws.freed = false
	if freed {
		q.wake()
	}
}
