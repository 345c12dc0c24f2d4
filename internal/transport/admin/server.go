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

// DefaultDeadLetterTimeout bounds each dead-letter route's work on the queue when
// Config.DeadLetterTimeout is zero. A listing of the most dead letters takes milliseconds; a
// stalled disk would otherwise hold the route, and `handler dlq` behind it, for as long as it stalls.
const DefaultDeadLetterTimeout = 5 * time.Second

// retryAfterSeconds is the Retry-After of a 503 from the dead-letter routes.
const retryAfterSeconds = "5"

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
	// DeadLetterTimeout bounds each dead-letter route's work on the queue; zero is
	// DefaultDeadLetterTimeout.
	DeadLetterTimeout time.Duration
	// Publishing says whether the intake can queue events, from how its recent publishes went
	// (webhook.Intake.PublishHealth); nil leaves it out. It must not wait.
	Publishing func(ctx context.Context) error
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
	if cfg.DeadLetterTimeout <= 0 {
		cfg.DeadLetterTimeout = DefaultDeadLetterTimeout
	}
	return &Server{cfg: cfg, log: log}
}

// HealthRoute adds GET /api/health: 200 with the queue counts; 503 when the intake's recent
// publishes failed or are stuck (a full or frozen disk, a broker that does not answer), or when
// the queue cannot be read within HealthTimeout. A probe or load balancer then stops sending
// traffic an instance would refuse. Reads alone are not enough to tell: they go on working on
// a disk that takes no writes.
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
// A sequence number with nothing parked under it is a 404. Each route's work on the queue is
// bounded by DeadLetterTimeout: past it the route answers 503 with Retry-After, as health does.
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
	rec, err := bounded(r.Context(), s.cfg.DeadLetterTimeout, func(ctx context.Context) (support.Record, error) {
		return s.cfg.Records.Record(ctx, q)
	})
	if err != nil {
		s.unavailable(w, r, "read history", err, "the history could not be read")
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "ok", "backend": s.cfg.Backend}
	if s.cfg.Publishing != nil {
		if err := s.cfg.Publishing(r.Context()); err != nil {
			s.log.ErrorContext(r.Context(), "health: the intake cannot queue events", slog.String("error", err.Error()))
			problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable",
				"the last events could not be queued; the intake answers 503 until the queue takes them again"))
			return
		}
	}
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

// stats reads the queue counts within HealthTimeout.
func (s *Server) stats(ctx context.Context) (queue.Stats, error) {
	st, err := bounded(ctx, s.cfg.HealthTimeout, s.cfg.Stats)
	if err != nil {
		return queue.Stats{}, fmt.Errorf("read queue counts: %w", err)
	}
	return st, nil
}

// errNoAnswer is the error of queue work that did not end within its bound.
var errNoAnswer = errors.New("no answer from the queue in time")

// bounded runs op with a deadline d away, and waits for it no longer than that. op runs apart,
// because work stuck in the kernel (a frozen or failing disk) does not look at its context: the
// caller gets its answer in time, and op ends on its own when the disk does.
func bounded[T any](ctx context.Context, d time.Duration, op func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: waited %s: %w", errNoAnswer, d, ctx.Err())
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query", err.Error()))
		return
	}
	out, err := bounded(r.Context(), s.cfg.DeadLetterTimeout, func(ctx context.Context) ([]DeadLetter, error) {
		return support.Backend{Q: s.cfg.DeadLetters}.QueryDeadLetters(ctx, f)
	})
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
	d, err := bounded(r.Context(), s.cfg.DeadLetterTimeout, func(ctx context.Context) (Detail, error) {
		return support.Backend{Q: s.cfg.DeadLetters}.DeadLetter(ctx, seq)
	})
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
	id, err := bounded(r.Context(), s.cfg.DeadLetterTimeout, func(ctx context.Context) (string, error) {
		return support.Backend{Q: s.cfg.DeadLetters}.Resubmit(ctx, seq)
	})
	switch {
	case errors.Is(err, queue.ErrNotFound):
		notFound(w, seq)
	case errors.Is(err, errNoAnswer):
		s.unavailable(w, r, "resubmit dead letter", err, "the queue gave no answer in time (a stalled or failing disk); "+
			"the resubmit may still happen: look at the dead letter again before retrying")
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
	_, err := bounded(r.Context(), s.cfg.DeadLetterTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, support.Backend{Q: s.cfg.DeadLetters}.Purge(ctx, seq)
	})
	switch {
	case errors.Is(err, queue.ErrNotFound):
		notFound(w, seq)
	case errors.Is(err, errNoAnswer):
		s.unavailable(w, r, "purge dead letter", err, "the queue gave no answer in time (a stalled or failing disk); "+
			"the purge may still happen: look at the dead letter again before retrying")
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

// unavailable logs err and answers 503 with Retry-After and detail, which says what happened and
// nothing of err. A read that got no answer in time says so, whatever detail the route gave.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, op string, err error, detail string) {
	s.log.ErrorContext(r.Context(), op, slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	if errors.Is(err, errNoAnswer) && r.Method == http.MethodGet {
		detail = fmt.Sprintf("the queue gave no answer within %s (a stalled or failing disk); retry later", s.cfg.DeadLetterTimeout)
	}
	w.Header().Set("Retry-After", retryAfterSeconds)
	problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable", detail))
}

// The views of dead letters are support's, shared by every face (see internal/support).
type (
	DeadLetter = support.DeadLetter
	Detail     = support.Detail
	Sighting   = support.Sighting
	Completion = support.Completion
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
