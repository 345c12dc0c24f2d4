// Package admin is the support API of a running dvrelay: GET /api/health, and the dead-letter
// routes `handler serve` adds (list with filters, show one with its history, resubmit, purge),
// which let support work on an embedded queue whose file belongs to that process. Client is what
// the `handler dlq` command uses to reach them.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/platform/problem"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/support"
)

// Route paths, shared by Server and Client.
const (
	pathHealth      = "/api/health"
	pathDeadLetters = "/api/deadletters"
	pathRecords     = "/api/records"
)

// DefaultHealthTimeout bounds GET /api/health when Config.HealthTimeout is zero. Probes give up
// after a few seconds; an answer after that is as good as none, and a 503 in time says more.
const DefaultHealthTimeout = 2 * time.Second

// maxListLimit bounds one listing, so a request cannot make the server load the whole queue.
const maxListLimit = 1000

// DeadLetterQueue is what the routes need from a backend's dead-letter queue: all of it.
type DeadLetterQueue = queue.DeadLetterAdmin

// Config is what the server shows and guards.
type Config struct {
	// Backend is the queue backend's name, shown by /api/health.
	Backend     string
	DeadLetters DeadLetterQueue
	// Stats counts the queue for /api/health; nil when the backend cannot count.
	Stats func(ctx context.Context) (queue.Stats, error)
	// Auth guards the dead-letter routes; health stays open, as probes do not carry secrets.
	Auth *httpauth.Authorizer
	// HealthTimeout bounds the queue read behind /api/health; zero is DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Records answers GET /api/records; nil leaves the route out.
	Records support.RecordFinder
}

// Server serves the admin routes.
type Server struct {
	cfg Config
	log *slog.Logger
}

// NewServer builds the routes over cfg. A nil Auth leaves the dead-letter routes open.
func NewServer(cfg Config, log *slog.Logger) *Server {
	if cfg.Auth == nil {
		cfg.Auth = httpauth.New("")
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	return &Server{cfg: cfg, log: log}
}

// HealthRoute adds GET /api/health: 200 with the queue counts, 503 when the queue cannot be read
// within HealthTimeout.
func (s *Server) HealthRoute(mux *http.ServeMux) {
	mux.HandleFunc("GET "+pathHealth, s.health)
}

// DeadLetterRoutes adds, behind the authorizer:
//   - GET /api/deadletters?limit=N&reason=R&entity=E&since=T&before=T&after=SEQ&eventId=ID: the
//     dead letters selected (times in RFC 3339), oldest first;
//   - GET /api/deadletters/{seq}: one dead letter with its event's history;
//   - POST /api/deadletters/{seq}/resubmit and POST /api/deadletters/{seq}/purge;
//   - GET /api/records?q=KEY: what happened to a record or an event (when Config.Records is set).
//
// A sequence number with nothing parked under it is a 404.
func (s *Server) DeadLetterRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+pathDeadLetters, s.cfg.Auth.Require(http.HandlerFunc(s.list)))
	mux.Handle("GET "+pathDeadLetters+"/{seq}", s.cfg.Auth.Require(http.HandlerFunc(s.show)))
	mux.Handle("POST "+pathDeadLetters+"/{seq}/resubmit", s.cfg.Auth.Require(http.HandlerFunc(s.resubmit)))
	mux.Handle("POST "+pathDeadLetters+"/{seq}/purge", s.cfg.Auth.Require(http.HandlerFunc(s.purge)))
	if s.cfg.Records != nil {
		mux.Handle("GET "+pathRecords, s.cfg.Auth.Require(http.HandlerFunc(s.records)))
	}
}

// records answers GET /api/records?q=KEY: every event whose RecordId, EventId or CorrelationId
// is KEY (or the record of a pasted Dataverse record URL), each with its timeline.
func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	if support.SearchKey(q) == "" {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query",
			"q must be a RecordId, an EventId, a CorrelationId or a Dataverse record URL"))
		return
	}
	rec, err := s.cfg.Records.Record(r.Context(), q)
	if err != nil {
		s.unavailable(w, r, "read history", err, "the history could not be read")
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "ok", "backend": s.cfg.Backend}
	if s.cfg.Stats != nil {
		st, err := s.stats(r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "health: read queue", slog.String("error", err.Error()))
			problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable",
				"the embedded queue could not be read"))
			return
		}
		body["queued"] = st.Queued
		body["scheduled"] = st.Scheduled
		body["deadLettered"] = st.DeadLettered
		body["oldestQueuedAgeSeconds"] = st.OldestQueuedAge.Seconds()
	}
	writeJSON(w, http.StatusOK, body)
}

// stats reads the queue counts within HealthTimeout. The read runs apart and is waited for only
// that long, because a read stuck in the kernel (a frozen or failing disk) does not look at its
// context: the probe still gets its 503 in time, and the read ends on its own when the disk does.
func (s *Server) stats(ctx context.Context) (queue.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
	defer cancel()
	type result struct {
		st  queue.Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := s.cfg.Stats(ctx)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return queue.Stats{}, fmt.Errorf("read queue counts: %w", r.err)
		}
		return r.st, nil
	case <-ctx.Done():
		return queue.Stats{}, fmt.Errorf("read queue counts: no answer within %s: %w", s.cfg.HealthTimeout, ctx.Err())
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query", err.Error()))
		return
	}
	out, err := support.Backend{Q: s.cfg.DeadLetters}.QueryDeadLetters(r.Context(), f)
	if err != nil {
		s.unavailable(w, r, "list dead letters", err, "the dead-letter queue could not be read")
		return
	}
	writeJSON(w, http.StatusOK, deadLetterList{DeadLetters: out})
}

// parseFilter reads a listing's query parameters; an error says which one is wrong and how.
func parseFilter(q url.Values) (queue.DeadLetterFilter, error) {
	f := queue.DeadLetterFilter{
		Limit:   queue.DefaultDeadLetterLimit,
		Reason:  q.Get("reason"),
		Entity:  q.Get("entity"),
		EventID: q.Get("eventId"),
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return f, fmt.Errorf("limit must be a whole number from 1 to %d", maxListLimit)
		}
		f.Limit = n
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, errors.New("after must be a sequence number (a whole number, 0 or more)")
		}
		f.AfterSeq = n
	}
	for name, t := range map[string]*time.Time{"since": &f.Since, "before": &f.Before} {
		if v := q.Get(name); v != "" {
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, fmt.Errorf("%s must be an RFC 3339 time, e.g. 2025-11-25T07:04:05Z", name)
			}
			*t = at
		}
	}
	return f, nil
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	seq, ok := pathSeq(w, r)
	if !ok {
		return
	}
	d, err := support.Backend{Q: s.cfg.DeadLetters}.DeadLetter(r.Context(), seq)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		notFound(w, seq)
	case err != nil:
		s.unavailable(w, r, "read dead letter", err, "the dead letter or its history could not be read")
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

func (s *Server) resubmit(w http.ResponseWriter, r *http.Request) {
	seq, ok := pathSeq(w, r)
	if !ok {
		return
	}
	id, err := s.cfg.DeadLetters.Resubmit(r.Context(), seq)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		notFound(w, seq)
	case err != nil:
		s.unavailable(w, r, "resubmit dead letter", err, "the message could not be resubmitted; it is still dead-lettered")
	default:
		s.log.InfoContext(r.Context(), "dead letter resubmitted", slog.Int64("seq", seq), slog.String("messageId", id),
			slog.String("from", "admin API "+r.RemoteAddr))
		writeJSON(w, http.StatusOK, resubmitted{SequenceNumber: seq, MessageID: id})
	}
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	seq, ok := pathSeq(w, r)
	if !ok {
		return
	}
	err := s.cfg.DeadLetters.PurgeDeadLetter(r.Context(), seq)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		notFound(w, seq)
	case err != nil:
		s.unavailable(w, r, "purge dead letter", err, "the message could not be purged; it is still dead-lettered")
	default:
		s.log.InfoContext(r.Context(), "dead letter purged", slog.Int64("seq", seq), slog.String("from", "admin API "+r.RemoteAddr))
		writeJSON(w, http.StatusOK, purged{SequenceNumber: seq, Purged: true})
	}
}

// pathSeq reads {seq}; a bad one is answered with a 400 and ok false.
func pathSeq(w http.ResponseWriter, r *http.Request) (int64, bool) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid-sequence-number", "Invalid sequence number",
			"the sequence number must be a positive whole number"))
		return 0, false
	}
	return seq, true
}

// notFoundKind is the problem type of a sequence number with nothing parked under it; the
// client maps it back to queue.ErrNotFound.
const notFoundKind = "dead-letter-not-found"

func notFound(w http.ResponseWriter, seq int64) {
	problem.Write(w, problem.New(http.StatusNotFound, notFoundKind, "Dead letter not found",
		fmt.Sprintf("no dead-lettered message has sequence number %d", seq)))
}

// unavailable logs err and answers 503 with detail, which says what happened and nothing of err.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, op string, err error, detail string) {
	s.log.ErrorContext(r.Context(), op, slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable", detail))
}

// The views of dead letters are support's, shared by every face (see internal/support).
type (
	DeadLetter = support.DeadLetter
	Detail     = support.Detail
	Sighting   = support.Sighting
)

// View is d as support sees it (support.View).
func View(d queue.DeadLettered) DeadLetter { return support.View(d) }

// HistoryView is h as the routes show it (support.HistoryView).
func HistoryView(h []queue.Sighting) []Sighting { return support.HistoryView(h) }

// Cause is what went wrong, without the prefixes that say where (support.Cause).
func Cause(description, failedStep string) string { return support.Cause(description, failedStep) }

// deadLetterList is the answer to GET /api/deadletters.
type deadLetterList struct {
	DeadLetters []DeadLetter `json:"deadLetters"`
}

// resubmitted is the answer to POST /api/deadletters/{seq}/resubmit.
type resubmitted struct {
	SequenceNumber int64  `json:"sequenceNumber"`
	MessageID      string `json:"messageId"`
}

// purged is the answer to POST /api/deadletters/{seq}/purge.
type purged struct {
	SequenceNumber int64 `json:"sequenceNumber"`
	Purged         bool  `json:"purged"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
