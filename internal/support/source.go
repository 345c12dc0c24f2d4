// Package support holds the support operations on dead letters and events' history: list,
// group, show, resubmit and purge with a preview first, an event's timeline and a record's
// events. Each is written once here; `handler dlq`, the admin API and the console are faces of
// them.
package support

import (
	"context"
	"errors"
	"fmt"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Source is where dead letters are read and changed: a backend directly (Backend), or the admin
// routes of the handler serve that owns the embedded queue (admin.Client).
type Source interface {
	QueryDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]DeadLetter, error)
	DeadLetter(ctx context.Context, seq int64) (Detail, error)
	Resubmit(ctx context.Context, seq int64) (string, error)
	Purge(ctx context.Context, seq int64) error
}

// Backend is a Source over a backend's dead-letter queue.
type Backend struct {
	Q queue.DeadLetterAdmin
	// ReadOnly reads through queue.DeadLetterReader where the backend offers it, so a page that
	// is refreshed often never holds up the intake's writes.
	ReadOnly bool
}

// QueryDeadLetters lists what f selects, as support sees it.
func (b Backend) QueryDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]DeadLetter, error) {
	query := b.Q.QueryDeadLetters
	if r, ok := b.Q.(queue.DeadLetterReader); ok && b.ReadOnly {
		query = r.ReadDeadLetters
	}
	items, err := query(ctx, f)
	if err != nil {
		return nil, err
	}
	views := make([]DeadLetter, 0, len(items))
	for _, item := range items {
		views = append(views, View(item))
	}
	return views, nil
}

// DeadLetter is dead letter seq with its event's history; queue.ErrNotFound when nothing is
// parked under seq.
func (b Backend) DeadLetter(ctx context.Context, seq int64) (Detail, error) {
	found, err := b.QueryDeadLetters(ctx, queue.DeadLetterFilter{Seq: seq, Limit: 1})
	if err != nil {
		return Detail{}, err
	}
	if len(found) == 0 {
		return Detail{}, queue.ErrNotFound
	}
	history, err := b.Q.History(ctx, found[0].EventID)
	if err != nil {
		return Detail{}, fmt.Errorf("history of %s: %w", found[0].EventID, err)
	}
	d := Detail{DeadLetter: found[0], History: HistoryView(history)}
	d.NewerCompleted, d.CompletionsKept, err = b.LaterCompletion(ctx, seq)
	if err != nil {
		return Detail{}, err
	}
	return d, nil
}

// LaterCompletion is the event of the same record as dead letter seq that completed after seq
// was queued, or nil; kept is false where the backend remembers no completions (Service Bus).
func (b Backend) LaterCompletion(ctx context.Context, seq int64) (c *Completion, kept bool, err error) {
	h, ok := b.Q.(queue.CompletionHistory)
	if !ok {
		return nil, false, nil
	}
	done, newer, err := h.LaterCompletion(ctx, seq)
	if err != nil || !newer {
		return nil, true, err
	}
	return &Completion{MessageID: done.MessageID, CompletedAt: done.At}, true, nil
}

// laterCompletions is a Source that answers NewerCompleted without reading the whole dead letter.
type laterCompletions interface {
	LaterCompletion(ctx context.Context, seq int64) (*Completion, bool, error)
}

// NewerCompleted is the one check, for every face, that a later event of dead letter seq's
// record completed since it was queued, so resubmitting it would apply older data over newer;
// nil when none did or the backend cannot know. It asks the mark the embedded queue sets on a
// record's older dead letters as each event completes: one indexed read, whatever the history
// holds. Through the admin routes it reads the dead letter, whose detail carries the same mark.
func NewerCompleted(ctx context.Context, src Source, seq int64) (*Completion, error) {
	if lc, ok := src.(laterCompletions); ok {
		c, _, err := lc.LaterCompletion(ctx, seq)
		return c, err
	}
	d, err := src.DeadLetter(ctx, seq)
	if err != nil {
		return nil, err
	}
	return d.NewerCompleted, nil
}

// Resubmit sends dead letter seq back to the main queue and returns its new message id.
func (b Backend) Resubmit(ctx context.Context, seq int64) (string, error) {
	return b.Q.Resubmit(ctx, seq)
}

// Purge deletes dead letter seq for good.
func (b Backend) Purge(ctx context.Context, seq int64) error { return b.Q.PurgeDeadLetter(ctx, seq) }

// collectPage is how many dead letters one query of Collect asks for: under the admin routes'
// bound, so a listing needs no more than a few round trips.
const collectPage = 500

// Collect lists what f selects, page by page, up to limit (all of it when limit is 0).
func Collect(ctx context.Context, src Source, f queue.DeadLetterFilter, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	for {
		f.Limit = collectPage
		if limit > 0 {
			f.Limit = min(limit-len(out), collectPage)
		}
		page, err := src.QueryDeadLetters(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < f.Limit || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		f.AfterSeq = page[len(page)-1].SequenceNumber
	}
}

// Selection is what a resubmit or purge acts on: the sequence numbers named, or else every dead
// letter Filter selects.
type Selection struct {
	Seqs   []int64
	Filter queue.DeadLetterFilter
	// Previewed: Seqs are what a filter selected at preview time, so one no longer parked is
	// skipped (as a filter's would be) rather than a failure.
	Previewed bool
}

// Target is one dead letter a resubmit or purge acts on. Named targets were given by sequence
// number; the others were selected by a filter, and D is what was read of them.
type Target struct {
	Seq   int64
	Named bool
	D     *DeadLetter // nil when it was named and not looked up
}

// Targets are what sel selects now.
func Targets(ctx context.Context, src Source, sel Selection) ([]Target, error) {
	if len(sel.Seqs) > 0 {
		ts := make([]Target, 0, len(sel.Seqs))
		for _, seq := range sel.Seqs {
			ts = append(ts, Target{Seq: seq, Named: !sel.Previewed})
		}
		return ts, nil
	}
	items, err := Collect(ctx, src, sel.Filter, 0)
	if err != nil {
		return nil, err
	}
	ts := make([]Target, 0, len(items))
	for i := range items {
		ts = append(ts, Target{Seq: items[i].SequenceNumber, D: &items[i]})
	}
	return ts, nil
}

// LookUp fills in what named targets are, for a preview; those with nothing parked under them
// are returned in missing.
func LookUp(ctx context.Context, src Source, ts []Target) (found []Target, missing []int64, err error) {
	for _, t := range ts {
		if t.D != nil {
			found = append(found, t)
			continue
		}
		d, err := src.DeadLetter(ctx, t.Seq)
		if errors.Is(err, queue.ErrNotFound) {
			missing = append(missing, t.Seq)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		t.D = &d.DeadLetter
		found = append(found, t)
	}
	return found, missing, nil
}

// Result is what one act of a resubmit or purge came to.
type Result struct {
	Target
	MessageID string // resubmit: the new message id
	Err       error
	// Skipped: selected by a filter and no longer parked (resubmitted or purged meanwhile).
	Skipped bool
}

// Summary counts a resubmit's or purge's results.
type Summary struct {
	Done, Skipped, Failed int
}

// Act is the act a resubmit or purge does on one sequence number.
type Act func(ctx context.Context, seq int64) (messageID string, err error)

// ResubmitAct resubmits through src.
func ResubmitAct(src Source) Act { return src.Resubmit }

// PurgeAct purges through src.
func PurgeAct(src Source) Act {
	return func(ctx context.Context, seq int64) (string, error) { return "", src.Purge(ctx, seq) }
}

// Apply acts on every target, going on past failures, and tells each result to report (which
// may be nil). A target selected by a filter that is no longer parked is skipped; a named one is
// a failure. When report returns false the rest are not tried and count as failed.
func Apply(ctx context.Context, ts []Target, act Act, report func(i int, r Result) bool) Summary {
	var s Summary
	for i, t := range ts {
		id, err := act(ctx, t.Seq)
		r := Result{Target: t, MessageID: id, Err: err}
		switch {
		case err == nil:
			s.Done++
		case errors.Is(err, queue.ErrNotFound) && !t.Named:
			r.Skipped, r.Err = true, nil
			s.Skipped++
		default:
			s.Failed++
		}
		if report != nil && !report(i, r) {
			s.Failed += len(ts) - i - 1
			return s
		}
	}
	return s
}
