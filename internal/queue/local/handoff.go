package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// The handoff: a publish that lands while a Receive is waiting goes to that Receive in memory.
//
// Without it every event costs the writer a second transaction (the receive's lock) and the
// read pool a look for work after every commit (a read that re-reads the pages the commit just
// changed). With it, the publish's own INSERT writes the message already locked for the waiting
// receiver, with its delivery counted, so the lock is as durable as a lockDue lock, and once the
// commit is done the writer hands the message over; the Receive never reads the queue.
//
// The read path stays for what the handoff does not carry: a backlog that built up while no one
// was waiting, a record's next event released by a completion, abandons, retries, scheduled
// messages and expired locks. A change that may have made such a message available says so
// (writerState.freed, or wake), and Receive looks again only then, or when a time it knows of
// comes (a scheduled message, a lock running out; at most maxPoll apart).

// waiter is a Receive waiting for messages the writer may hand it.
type waiter struct {
	ctx  context.Context // the Receive's: the writer locks nothing for a caller that has gone
	want int             // messages it can still take in the writer's current batch
	// assigned counts the messages locked for it in the writer's current batch; while it is
	// above zero the waiter may not leave: its messages are locked and counted, and only it
	// can receive them.
	assigned int
	got      []lockedMessage
	// ready is written once: after the commit that locked its messages, or, when it is leaving,
	// once its claims were all rolled back.
	ready chan struct{}
	// leaving: its Receive has stopped waiting and waits only for what was locked for it.
	leaving bool
}

// waiters is the queue's list of waiting Receives, oldest first.
type waiters struct {
	mu   sync.Mutex
	list []*waiter
	// stale is set when a message may be available that no waiter was handed: Receive reads
	// the queue only when it is (or a known time has come). It starts set: a queue just opened
	// may hold anything.
	stale atomic.Bool
	// recheckAt (unix ns) is when time alone may make a message available (a scheduled one
	// falling due, a lock running out), as the last look that found nothing learnt; 0: look at
	// once. It is the queue's, not one Receive's: a Receive called again just after a handoff
	// would otherwise look in the file first, and while it looked no waiter was registered, so
	// the publishes of that moment missed the handoff and cost a look and a lock of their own.
	recheckAt atomic.Int64
}

// await registers a Receive that can take up to want messages.
func (ws *waiters) await(ctx context.Context, want int) *waiter {
	w := &waiter{ctx: ctx, want: want, ready: make(chan struct{}, 1)}
	ws.mu.Lock()
	ws.list = append(ws.list, w)
	ws.mu.Unlock()
	return w
}

// any reports whether a Receive is waiting.
func (ws *waiters) any() bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.list) > 0
}

// leave removes w and reports true, unless the writer has already locked messages for it: the
// caller must then wait on w.ready and take them.
func (ws *waiters) leave(w *waiter) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w.assigned > 0 {
		w.leaving = true
		return false
	}
	ws.remove(w)
	return true
}

func (ws *waiters) remove(w *waiter) {
	for i, x := range ws.list {
		if x == w {
			ws.list = append(ws.list[:i], ws.list[i+1:]...)
			return
		}
	}
}

// claim reserves a place for one message with the oldest waiter that has room, or returns nil.
func (ws *waiters) claim() *waiter {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.list {
		if w.want > 0 && w.ctx.Err() == nil {
			w.want--
			w.assigned++
			return w
		}
	}
	return nil
}

// unclaim gives back a place claim reserved and did not fill (or whose change was rolled back).
// A waiter that is leaving and has nothing locked for it any more is let go.
func (ws *waiters) unclaim(w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w.want++
	w.assigned--
	if w.assigned == 0 && w.leaving {
		ws.remove(w)
		w.ready <- struct{}{}
	}
}

// handoff is a message the writer locked at insert for a waiter, not yet handed over.
type handoff struct {
	w *waiter
	m lockedMessage
}

// writerState is what the changes of one group commit tell the writer about the messages they
// touched. Only the writer goroutine uses it, from inside the changes it applies.
type writerState struct {
	handoffs []handoff
	// freed: a change may have made a message available that no waiter was handed.
	freed bool
	// bodies is the size of the message bodies the batch inserted (see loggedBy).
	bodies int64
	// ids are the message ids the batch remembered for duplicate detection (see recentids.go).
	ids []pendingID
}

// rollBack forgets the handoffs from mark on (their change was rolled back) and frees their
// waiters' places.
func (q *Queue) rollBackHandoffs(mark int) {
	for _, h := range q.ws.handoffs[mark:] {
		q.waiting.unclaim(h.w)
	}
	clear(q.ws.handoffs[mark:])
	q.ws.handoffs = q.ws.handoffs[:mark]
}

// handOver ends a commit for the waiters: with err nil each gets the messages locked for it,
// otherwise (the commit failed: nothing of it was written) each is told so and looks again.
func (q *Queue) handOver(err error) {
	if len(q.ws.handoffs) == 0 {
		return
	}
	if err != nil {
		q.rollBackHandoffs(0)
		return
	}
	ws := &q.waiting
	ws.mu.Lock()
	var done []*waiter
	for _, h := range q.ws.handoffs {
		w := h.w
		w.got = append(w.got, h.m)
		if w.assigned > 0 { // its first message of the batch: it is done waiting
			w.assigned = 0
			ws.remove(w)
			done = append(done, w)
		}
	}
	ws.mu.Unlock()
	for _, w := range done {
		w.ready <- struct{}{}
	}
	clear(q.ws.handoffs)
	q.ws.handoffs = q.ws.handoffs[:0]
}

// newLockToken is a lock token in the form lockDueSQL gives one: 32 lower-case hex digits.
func newLockToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// lockedAtInsert is the message r as a Receive gets it, locked at insert time now as seq.
func (q *Queue) lockedAtInsert(r row, seq int64, token string, now int64) lockedMessage {
	return lockedMessage{
		Received: &queue.Received{
			Message: queue.Message{
				MessageID: r.messageID, CorrelationID: r.correlationID, Subject: r.subject,
				SessionID: r.sessionID, ContentType: r.contentType, Body: r.body,
			},
			SequenceNumber: seq,
			LockToken:      token,
			LockedUntil:    fromNS(now + q.opts.LockDuration.Nanoseconds()),
			DeliveryCount:  1,
			EnqueuedTime:   fromNS(now),
		},
		props: r.props,
		dueAt: now,
	}
}
