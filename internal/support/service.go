package support

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Service is the support operations over one backend, as the console (and any other face that
// holds the backend itself) uses them.
type Service struct {
	Source Source
	// History is the backend's record of what happened to events; nil where the backend keeps
	// none (Service Bus: Application Insights has it, see HistoryQuery).
	History queue.HistoryReader
	// Grouper groups dead letters at the source; nil groups them by reading them.
	Grouper queue.DeadLetterGrouper
	// Stats counts the queue; nil where the backend cannot.
	Stats func(ctx context.Context) (queue.Stats, error)
	Log   *slog.Logger
	Now   func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// HistoryQuery names the query in infra/queries/ that answers from Application Insights what
// the broker does not keep.
const HistoryQuery = "infra/queries/event-history.kql"

// Overview is the state of the relay at a glance.
type Overview struct {
	At      time.Time
	Stats   *queue.Stats // nil when the backend cannot count
	Hour    *queue.Activity
	Day     *queue.Activity
	Reasons []ReasonCount
}

// ReasonCount is how many dead letters have one reason.
type ReasonCount struct {
	Reason string
	Count  int
}

// Overview reads the queue's counts, the activity of the last hour (by minute) and day (by
// hour), and the dead letters by reason.
func (s *Service) Overview(ctx context.Context) (Overview, error) {
	o := Overview{At: s.now()}
	if s.Stats != nil {
		st, err := s.Stats(ctx)
		if err != nil {
			return o, fmt.Errorf("overview: %w", err)
		}
		o.Stats = &st
	}
	if s.History != nil {
		hourStart := o.At.Truncate(time.Minute).Add(-59 * time.Minute)
		hour, err := s.History.Activity(ctx, hourStart, time.Minute, 60)
		if err != nil {
			return o, fmt.Errorf("overview: %w", err)
		}
		dayStart := o.At.Truncate(time.Hour).Add(-23 * time.Hour)
		day, err := s.History.Activity(ctx, dayStart, time.Hour, 24)
		if err != nil {
			return o, fmt.Errorf("overview: %w", err)
		}
		o.Hour, o.Day = &hour, &day
	}
	groups, err := s.Groups(ctx, queue.DeadLetterFilter{})
	if err != nil {
		return o, fmt.Errorf("overview: %w", err)
	}
	byReason := map[string]int{}
	for _, g := range groups {
		byReason[g.Reason] += g.Count
	}
	for r, n := range byReason {
		o.Reasons = append(o.Reasons, ReasonCount{Reason: r, Count: n})
	}
	slices.SortFunc(o.Reasons, func(a, b ReasonCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return o, nil
}

// Groups counts the dead letters f selects by reason, failed step and entity, largest first.
func (s *Service) Groups(ctx context.Context, f queue.DeadLetterFilter) ([]queue.DeadLetterGroup, error) {
	if s.Grouper != nil {
		return s.Grouper.GroupDeadLetters(ctx, f)
	}
	f.Seq, f.AfterSeq = 0, 0
	all, err := Collect(ctx, s.Source, f, 0)
	if err != nil {
		return nil, err
	}
	return GroupViews(all), nil
}

// GroupViews groups dead letters already read, as a DeadLetterGrouper does at the source.
func GroupViews(all []DeadLetter) []queue.DeadLetterGroup {
	type key struct{ reason, step, entity string }
	idx := map[key]int{}
	var out []queue.DeadLetterGroup
	for _, d := range all {
		k := key{d.Reason, d.FailedStep, d.Entity}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, queue.DeadLetterGroup{Reason: k.reason, Step: k.step, Entity: k.entity, Oldest: d.DeadLetteredAt})
		}
		g := &out[i]
		g.Count++
		g.Oldest = minTime(g.Oldest, d.DeadLetteredAt)
		if d.DeadLetteredAt.After(g.Newest) {
			g.Newest = d.DeadLetteredAt
		}
	}
	slices.SortStableFunc(out, func(a, b queue.DeadLetterGroup) int { return b.Count - a.Count })
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// List is one page of the dead letters f selects, oldest first.
func (s *Service) List(ctx context.Context, f queue.DeadLetterFilter) ([]DeadLetter, error) {
	return s.Source.QueryDeadLetters(ctx, f)
}

// Preview is what a resubmit or purge of a selection would act on, read before anything is sent.
type Preview struct {
	Targets []Target
	Missing []int64
	// NewerDone lists, by sequence number, the event id of a later event of the target's record
	// that completed since the target was queued (NewerCompleted): resubmitting it would replay
	// an older change over a newer one.
	NewerDone map[int64]string
}

// Preview reads what sel selects now.
func (s *Service) Preview(ctx context.Context, sel Selection) (Preview, error) {
	ts, err := Targets(ctx, s.Source, sel)
	if err != nil {
		return Preview{}, err
	}
	found, missing, err := LookUp(ctx, s.Source, ts)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{Targets: found, Missing: missing, NewerDone: map[int64]string{}}
	for _, t := range found {
		c, err := NewerCompleted(ctx, s.Source, t.Seq)
		if errors.Is(err, queue.ErrNotFound) {
			continue // resubmitted or purged since it was read; the act will skip it
		}
		if err != nil {
			return Preview{}, err
		}
		if c != nil {
			p.NewerDone[t.Seq] = queue.BaseID(c.MessageID)
		}
	}
	return p, nil
}

// Origin is who asked for a resubmit or purge, for the audit line: "console 127.0.0.1:50312".
type Origin string

// Resubmit sends what sel selects back to the queue and writes one audit line.
func (s *Service) Resubmit(ctx context.Context, sel Selection, from Origin) (Summary, error) {
	return s.apply(ctx, "resubmit", sel, ResubmitAct(s.Source), from)
}

// Purge deletes what sel selects for good and writes one audit line.
func (s *Service) Purge(ctx context.Context, sel Selection, from Origin) (Summary, error) {
	return s.apply(ctx, "purge", sel, PurgeAct(s.Source), from)
}

func (s *Service) apply(ctx context.Context, what string, sel Selection, act Act, from Origin) (Summary, error) {
	ts, err := Targets(ctx, s.Source, sel)
	if err != nil {
		return Summary{}, err
	}
	var firstErr error
	sum := Apply(ctx, ts, act, func(_ int, r Result) bool {
		if r.Err != nil && !errors.Is(r.Err, queue.ErrNotFound) && firstErr == nil {
			firstErr = r.Err
		}
		return ctx.Err() == nil
	})
	level := slog.LevelInfo
	if sum.Failed > 0 {
		level = slog.LevelWarn
	}
	s.log().Log(ctx, level, "support "+what, slog.String("action", what), slog.String("selection", describe(sel)),
		slog.Int("selected", len(ts)), slog.Int("done", sum.Done), slog.Int("skipped", sum.Skipped),
		slog.Int("failed", sum.Failed), slog.String("from", string(from)))
	if firstErr != nil {
		return sum, fmt.Errorf("%s: %d failed, the first: %w", what, sum.Failed, firstErr)
	}
	return sum, nil
}

// describe is a selection in one line of ids and names, never values.
func describe(sel Selection) string {
	if len(sel.Seqs) > 0 {
		parts := make([]string, 0, len(sel.Seqs))
		for _, n := range sel.Seqs {
			parts = append(parts, fmt.Sprint(n))
		}
		return "seq " + strings.Join(parts, ",")
	}
	f := sel.Filter
	var parts []string
	if f.Reason != "" {
		parts = append(parts, "reason="+f.Reason)
	}
	if f.Entity != "" {
		parts = append(parts, "entity="+f.Entity)
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

// Event is everything support can know about one event.
type Event struct {
	EventID string
	// Parked are its dead letters now on the dead-letter queue, with body, properties and cause.
	Parked []Detail
	// Timeline is what happened to it, oldest first; nil when the backend keeps no history.
	Timeline []queue.HistoryEntry
	// Sightings are the message ids the queue knows for it (from the dead letters, the queue and
	// duplicate detection), for backends without history.
	Sightings  []Sighting
	HasHistory bool
}

// Event reads the event eventID: its dead letters and its timeline.
func (s *Service) Event(ctx context.Context, eventID string) (Event, error) {
	ev := Event{EventID: eventID, HasHistory: s.History != nil}
	parked, err := s.Source.QueryDeadLetters(ctx, queue.DeadLetterFilter{EventID: eventID, Limit: 20})
	if err != nil {
		return ev, fmt.Errorf("event %s: %w", eventID, err)
	}
	for _, d := range parked {
		detail, err := s.Source.DeadLetter(ctx, d.SequenceNumber)
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		if err != nil {
			return ev, fmt.Errorf("event %s: %w", eventID, err)
		}
		ev.Parked = append(ev.Parked, detail)
		ev.Sightings = detail.History
	}
	if s.History != nil {
		h, err := s.History.EventHistory(ctx, queue.HistoryQuery{Key: eventID})
		if err != nil {
			return ev, fmt.Errorf("event %s: %w", eventID, err)
		}
		for _, e := range h {
			if e.EventID == eventID {
				ev.Timeline = append(ev.Timeline, e)
			}
		}
	}
	return ev, nil
}

// Story is one event of a record: what it was, how it ended, and what happened to it.
type Story struct {
	EventID       string    `json:"eventId"`
	EventName     string    `json:"eventName,omitempty"`
	Entity        string    `json:"entity,omitempty"`
	RecordID      string    `json:"recordId,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Accepted      time.Time `json:"accepted"`
	Outcome       string    `json:"outcome"` // the last thing that happened: queue.Hist*
	At            time.Time `json:"at"`
	Attempts      int       `json:"attempts"`
	Cause         string    `json:"cause,omitempty"`
	Timeline      []Entry   `json:"timeline,omitempty"`
}

// Entry is one thing that happened to an event (queue.HistoryEntry), as support reads it.
type Entry struct {
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	MessageID  string    `json:"messageId"`
	Attempt    int       `json:"attempt,omitempty"`
	Step       string    `json:"step,omitempty"`
	Status     int       `json:"status,omitempty"`
	DurationMs int64     `json:"durationMs,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

func entryOf(e queue.HistoryEntry) Entry {
	return Entry{At: e.At, Kind: e.Kind, MessageID: e.MessageID, Attempt: e.Attempt, Step: e.Step, Status: e.Status,
		DurationMs: e.Duration.Milliseconds(), Detail: e.Detail}
}

// Record is every event the search key names, in the order they were accepted.
type Record struct {
	Key    string  `json:"key"` // what was searched for, as understood
	Events []Story `json:"events"`
	// DeadLettersOnly: the backend keeps no history, so only the dead letters were searched.
	DeadLettersOnly bool `json:"deadLettersOnly,omitempty"`
}

// RecordFinder answers "what happened to this record": the Service over a backend, or the
// admin API of the handler serve that owns it.
type RecordFinder interface {
	Record(ctx context.Context, q string) (Record, error)
}

// maxRecordEntries bounds one record search.
const maxRecordEntries = 5000

// Record finds the events whose RecordId, EventId or CorrelationId is the key in q (which may be
// a pasted Dataverse record URL), each with its outcome.
func (s *Service) Record(ctx context.Context, q string) (Record, error) {
	rec := Record{Key: SearchKey(q)}
	if rec.Key == "" {
		return rec, nil
	}
	if s.History == nil {
		return s.searchDeadLetters(ctx, rec)
	}
	h, err := s.History.EventHistory(ctx, queue.HistoryQuery{Key: rec.Key, Limit: maxRecordEntries})
	if err != nil {
		return rec, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	idx := map[string]int{}
	for _, e := range h {
		i, ok := idx[e.EventID]
		if !ok {
			i = len(rec.Events)
			idx[e.EventID] = i
			rec.Events = append(rec.Events, Story{EventID: e.EventID, Accepted: e.At})
		}
		st := &rec.Events[i]
		st.EventName = cmpOr(st.EventName, e.EventName)
		st.Entity = cmpOr(st.Entity, e.Entity)
		st.RecordID = cmpOr(st.RecordID, e.RecordID)
		st.CorrelationID = cmpOr(st.CorrelationID, e.CorrelationID)
		if e.Kind == queue.HistAccepted {
			st.Accepted = e.At
		}
		if e.Attempt > 0 {
			st.Attempts++
		}
		st.Outcome, st.At = e.Kind, e.At
		st.Timeline = append(st.Timeline, entryOf(e))
		switch e.Kind {
		case queue.HistDeadLettered, queue.HistRetrying:
			st.Cause = Cause(e.Detail, e.Step)
		case queue.HistCompleted:
			st.Cause = ""
		}
	}
	return rec, nil
}

// maxScanned bounds the dead letters a search reads where the backend keeps no history.
const maxScanned = 10_000

func (s *Service) searchDeadLetters(ctx context.Context, rec Record) (Record, error) {
	rec.DeadLettersOnly = true
	all, err := Collect(ctx, s.Source, queue.DeadLetterFilter{}, maxScanned)
	if err != nil {
		return rec, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	for _, d := range all {
		if !strings.EqualFold(d.RecordID, rec.Key) && d.EventID != rec.Key && d.CorrelationID != rec.Key {
			continue
		}
		rec.Events = append(rec.Events, Story{EventID: d.EventID, EventName: d.EventName, Entity: d.Entity,
			RecordID: d.RecordID, CorrelationID: d.CorrelationID, Outcome: queue.HistDeadLettered,
			At: d.DeadLetteredAt, Attempts: d.Attempt, Cause: d.Cause})
	}
	return rec, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var guid = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// SearchKey is what a search box's text names: the record id of a pasted Dataverse record URL
// (…/main.aspx?etn=opportunity&id=… or …/api/data/v9.2/opportunities(…)), else the text
// itself, trimmed of spaces and braces.
func SearchKey(q string) string {
	q = strings.TrimSpace(q)
	if u, err := url.Parse(q); err == nil && (u.Scheme == "https" || u.Scheme == "http") {
		if id := u.Query().Get("id"); id != "" {
			return strings.ToLower(strings.Trim(id, "{}"))
		}
		if m := guid.FindString(u.Path); m != "" {
			return strings.ToLower(m)
		}
	}
	q = strings.Trim(q, "{} ")
	if guid.FindString(q) == q {
		return strings.ToLower(q)
	}
	return q
}

// RecordURL is the record's form in the Dataverse environment at base (DATAVERSE_URL), or "" when
// base, entity or id is unknown.
func RecordURL(base, entity, id string) string {
	if base == "" || entity == "" || id == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/main.aspx?pagetype=entityrecord&etn=" + url.QueryEscape(entity) + "&id=" + url.QueryEscape(id)
}
