package queue

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DeadLetterAdmin is what support tooling (the admin routes, `handler dlq`) needs from a
// backend's dead-letter queue. Every backend keeps the same semantics; queuetest checks them.
type DeadLetterAdmin interface {
	// QueryDeadLetters returns the dead letters f selects, lowest sequence number (oldest) first.
	QueryDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLettered, error)
	// History lists the message ids the backend knows for the event eventID, in chain order
	// (see SortHistory), including those implied by the ids it has seen.
	History(ctx context.Context, eventID string) ([]Sighting, error)
	// Resubmit sends dead letter seq back to the main queue as a new delivery chain with the same
	// EventId and CorrelationId and a new MessageID (ResubmitID), and returns that id.
	// ErrNotFound when nothing is parked under seq.
	Resubmit(ctx context.Context, seq int64) (string, error)
	// PurgeDeadLetter deletes dead letter seq for good. ErrNotFound when nothing is parked under seq.
	PurgeDeadLetter(ctx context.Context, seq int64) error
}

// DefaultDeadLetterLimit is how many dead letters a query returns when its filter sets no limit.
const DefaultDeadLetterLimit = 100

// DeadLetterFilter selects dead letters. The zero value selects the first DefaultDeadLetterLimit
// of them; every field set narrows the selection further. Backends that filter at the source
// (SQL) must keep Match's semantics, and those that cannot (a peek) use Match itself.
type DeadLetterFilter struct {
	Seq      int64     // only this sequence number
	AfterSeq int64     // only sequence numbers above this one: the next page of a listing
	EventID  string    // only the messages of this event: BaseID(MessageID) == EventID
	Reason   string    // only this reason, compared ignoring ASCII case
	Entity   string    // only this Entity property (a table's logical name), ignoring ASCII case
	Since    time.Time // only those dead-lettered at or after this time
	Before   time.Time // only those dead-lettered before this time
	Limit    int       // at most this many; DefaultDeadLetterLimit when not positive
}

// Max is how many dead letters f returns at most.
func (f DeadLetterFilter) Max() int {
	if f.Limit <= 0 {
		return DefaultDeadLetterLimit
	}
	return f.Limit
}

// Match reports whether d is selected by f, the limit aside.
func (f DeadLetterFilter) Match(d DeadLettered) bool {
	switch {
	case f.Seq > 0 && d.SequenceNumber != f.Seq,
		d.SequenceNumber <= f.AfterSeq,
		f.EventID != "" && BaseID(d.MessageID) != f.EventID,
		f.Reason != "" && !equalFoldASCII(d.Reason, f.Reason),
		f.Entity != "" && !equalFoldASCII(stringProperty(d.ApplicationProperties, PropEntity), f.Entity),
		!f.Since.IsZero() && d.DeadLetteredAt.Before(f.Since),
		!f.Before.IsZero() && !d.DeadLetteredAt.Before(f.Before):
		return false
	}
	return true
}

// equalFoldASCII compares as SQLite's NOCASE collation does, so the embedded queue's SQL and a
// filter applied in Go agree: only A-Z fold.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func stringProperty(props map[string]any, name string) string {
	s, _ := props[name].(string)
	return s
}

// What a backend knows about one message id of an event, strongest first: History keeps the
// strongest state an id was seen in.
const (
	// SeenDeadLettered: parked on the dead-letter queue now (Sighting.Seq says where).
	SeenDeadLettered = "dead-lettered"
	// SeenQueued: on the main queue now, due, scheduled or being processed.
	SeenQueued = "queued"
	// SeenPublished: the queue accepted it (within its duplicate detection window) and it has
	// moved on since: processed, retried under a new id, dead-lettered and then resubmitted.
	SeenPublished = "published"
	// SeenImplied: not seen by the backend, but a later id of the event implies it existed: a
	// retry's number names the attempts before it, a resubmission its event's first message.
	SeenImplied = "implied"
)

// Sighting is one message id of an event's history.
type Sighting struct {
	MessageID string
	Attempt   int       // the attempt its delivery chain stood for: 1, or n for <chain>/retry/n
	State     string    // Seen*
	Seq       int64     // the dead letter's sequence number when State is SeenDeadLettered
	At        time.Time // when the queue saw it (enqueued or dead-lettered); zero when not known
}

// History completes what a backend has seen of an event with the ids those imply, keeps one
// sighting per id (the strongest state, the earliest time) and sorts them in chain order.
func History(seen []Sighting) []Sighting {
	byID := map[string]Sighting{}
	add := func(s Sighting) {
		s.Attempt = AttemptOfID(s.MessageID)
		old, ok := byID[s.MessageID]
		switch {
		case !ok:
			byID[s.MessageID] = s
		case stateRank(s.State) < stateRank(old.State):
			if s.At.IsZero() {
				s.At = old.At
			}
			byID[s.MessageID] = s
		case old.At.IsZero():
			old.At = s.At
			byID[s.MessageID] = old
		}
	}
	for _, s := range seen {
		add(s)
		chain := ChainID(s.MessageID)
		for n := 1; n < AttemptOfID(s.MessageID); n++ {
			add(Sighting{MessageID: attemptID(chain, n), State: SeenImplied})
		}
		if base := BaseID(s.MessageID); base != chain {
			add(Sighting{MessageID: base, State: SeenImplied}) // a resubmitted event began as its EventId
		}
	}
	out := make([]Sighting, 0, len(byID))
	for _, s := range byID {
		out = append(out, s)
	}
	SortHistory(out)
	return out
}

func stateRank(state string) int {
	switch state {
	case SeenDeadLettered:
		return 0
	case SeenQueued:
		return 1
	case SeenPublished:
		return 2
	}
	return 3
}

// SortHistory orders one event's ids as its deliveries happened: the first chain (the EventId and
// its retries), then each resubmission and its retries, in the order they were made.
func SortHistory(s []Sighting) {
	slices.SortFunc(s, func(a, b Sighting) int {
		return cmp.Or(
			cmp.Compare(ResubmitNumber(a.MessageID), ResubmitNumber(b.MessageID)),
			cmp.Compare(AttemptOfID(a.MessageID), AttemptOfID(b.MessageID)),
			cmp.Compare(a.MessageID, b.MessageID),
		)
	})
}

// ChainID is the first message of id's delivery chain: id without a trailing /retry/<n>.
func ChainID(id string) string {
	if i := strings.LastIndex(id, retryInfix); i >= 0 {
		if _, err := strconv.Atoi(id[i+len(retryInfix):]); err == nil {
			return id[:i]
		}
	}
	return id
}

// AttemptOfID is the attempt a message id stands for: n for <chain>/retry/<n>, else 1.
func AttemptOfID(id string) int {
	if i := strings.LastIndex(id, retryInfix); i >= 0 {
		if n, err := strconv.Atoi(id[i+len(retryInfix):]); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

// ResubmitNumber is n for an id of the chain <EventId>/resubmit/<n>, and 0 for the event's first
// chain.
func ResubmitNumber(id string) int64 {
	i := strings.Index(id, resubmitInfix)
	if i < 0 {
		return 0
	}
	rest := id[i+len(resubmitInfix):]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest = rest[:j]
	}
	n, _ := strconv.ParseInt(rest, 10, 64)
	return n
}

// attemptID is the id of attempt n of the chain that starts with chain.
func attemptID(chain string, n int) string {
	if n <= 1 {
		return chain
	}
	return RetryID(chain, n)
}
