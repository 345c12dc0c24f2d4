package webhook

import (
	"log/slog"
	"sync"
	"time"
)

// refusalLinesPerSecond is how many request lines each refusal outcome may write a second (see
// logBudget): enough to show a misconfigured caller's correlation ids, few enough that a flood
// costs nothing.
const refusalLinesPerSecond = 10

// MsgRefusalsNotLogged is the message of the line that counts the refusals of one outcome the
// log budget held back in a second.
const MsgRefusalsNotLogged = "webhook intake: refusals not logged one by one"

// logBudget keeps the request log of refusals proportional to time, not to traffic. Every
// refusal outcome (overloaded, unauthorized, invalid, ...) may write refusalLinesPerSecond lines
// in each second; the rest are counted, and when the second ends one line says how many of that
// outcome went unlogged. An overload then writes a few lines a second instead of one per request
// it turns away: each line is an encoding and a write under the log's lock, work that grows with
// the very overload it reports and that delays the 503s it logs (BENCHMARKS.md). Accepted events
// are never held back: their line is how an event is traced. The intake's metrics count every
// request whatever the log shows.
type logBudget struct {
	perWindow int
	window    time.Duration
	// now and afterFunc are the budget's time (time.Now and time.AfterFunc; tests drive both).
	now       func() time.Time
	afterFunc func(d time.Duration, f func())
	// report writes the line for the suppressed lines of one outcome.
	report func(outcome string, status int, level slog.Level, suppressed int)

	mu       sync.Mutex
	outcomes map[string]*outcomeWindow // outcomes are a fixed, small set
}

// outcomeWindow is one outcome's current window.
type outcomeWindow struct {
	start  time.Time
	logged int
	// suppressed counts the lines not written since the last report; a report is pending
	// while it is above zero.
	suppressed int
	level      slog.Level // the highest level among them
	status     int        // their HTTP status (one outcome, one status)
}

func newLogBudget(report func(outcome string, status int, level slog.Level, suppressed int)) *logBudget {
	return &logBudget{
		perWindow: refusalLinesPerSecond,
		window:    time.Second,
		now:       time.Now,
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		report:    report,
		outcomes:  map[string]*outcomeWindow{},
	}
}

// allow reports whether the line of a request answered status, of outcome at level, may be
// written now. When it may not, the line is counted and a report of the count is due at the end
// of the window.
func (b *logBudget) allow(outcome string, status int, level slog.Level) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	w := b.outcomes[outcome]
	if w == nil {
		w = &outcomeWindow{}
		b.outcomes[outcome] = w
	}
	if now.Sub(w.start) >= b.window {
		w.start, w.logged = now, 0
	}
	if w.logged < b.perWindow {
		w.logged++
		return true
	}
	if w.suppressed == 0 {
		w.level = level
		b.afterFunc(w.start.Add(b.window).Sub(now), func() { b.flush(outcome) })
	}
	w.suppressed++
	w.level = max(w.level, level)
	w.status = status
	return false
}

// flush reports the lines of outcome suppressed since its last report.
func (b *logBudget) flush(outcome string) {
	b.mu.Lock()
	w := b.outcomes[outcome]
	n, status, level := w.suppressed, w.status, w.level
	w.suppressed = 0
	b.mu.Unlock()
	if n > 0 {
		b.report(outcome, status, level, n)
	}
}
