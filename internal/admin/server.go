// Package admin is the support API of a running dvrelay: GET /api/health, and the dead-letter
// routes `handler serve` adds (list, resubmit), which let support work on an embedded queue whose
// file belongs to that process. Client is what the `handler dlq` command uses to reach them.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/dvrelay/dvrelay/internal/httpauth"
	"github.com/dvrelay/dvrelay/internal/problem"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

// Route paths, shared by Server and Client.
const (
	pathHealth      = "/api/health"
	pathDeadLetters = "/api/deadletters"
)

// DefaultHealthTimeout bounds GET /api/health when Config.HealthTimeout is zero. Probes give up
// after a few seconds; an answer after that is as good as none, and a 503 in time says more.
const DefaultHealthTimeout = 2 * time.Second

// maxListLimit bounds one listing, so a request cannot make the server load the whole queue.
const maxListLimit = 1000

// DeadLetterQueue is what the routes need from a backend's dead-letter queue.
type DeadLetterQueue interface {
	ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error)
	Resubmit(ctx context.Context, seq int64) (string, error)
}

// Config is what the server shows and guards.
type Config struct {
	// Backend is the queue backend's name, shown by /api/health.
	Backend     string
	DeadLetters DeadLetterQueue
	// Stats counts the queue for /api/health; nil when the backend cannot count.
	Stats func(ctx context.Context) (local.Stats, error)
	// Auth guards the dead-letter routes; health stays open, as probes do not carry secrets.
	Auth *httpauth.Authorizer
	// HealthTimeout bounds the queue read behind /api/health; zero is DefaultHealthTimeout.
	HealthTimeout time.Duration
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

// DeadLetterRoutes adds GET /api/deadletters?limit=N and POST /api/deadletters/{seq}/resubmit,
// behind the authorizer.
func (s *Server) DeadLetterRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+pathDeadLetters, s.cfg.Auth.Require(http.HandlerFunc(s.list)))
	mux.Handle("POST "+pathDeadLetters+"/{seq}/resubmit", s.cfg.Auth.Require(http.HandlerFunc(s.resubmit)))
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
func (s *Server) stats(ctx context.Context) (local.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
	defer cancel()
	type result struct {
		st  local.Stats
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
			return local.Stats{}, fmt.Errorf("read queue counts: %w", r.err)
		}
		return r.st, nil
	case <-ctx.Done():
		return local.Stats{}, fmt.Errorf("read queue counts: no answer within %s: %w", s.cfg.HealthTimeout, ctx.Err())
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			problem.Write(w, problem.New(http.StatusBadRequest, "invalid-query", "Invalid query",
				fmt.Sprintf("limit must be a whole number from 1 to %d", maxListLimit)))
			return
		}
		limit = n
	}
	items, err := s.cfg.DeadLetters.ListDeadLetters(r.Context(), limit)
	if err != nil {
		s.log.ErrorContext(r.Context(), "list dead letters", slog.String("error", err.Error()))
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable",
			"the dead-letter queue could not be read"))
		return
	}
	out := make([]DeadLetter, 0, len(items))
	for _, d := range items {
		out = append(out, View(d))
	}
	writeJSON(w, http.StatusOK, deadLetterList{DeadLetters: out})
}

func (s *Server) resubmit(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		problem.Write(w, problem.New(http.StatusBadRequest, "invalid-sequence-number", "Invalid sequence number",
			"the sequence number must be a positive whole number"))
		return
	}
	id, err := s.cfg.DeadLetters.Resubmit(r.Context(), seq)
	switch {
	case errors.Is(err, local.ErrNotFound):
		problem.Write(w, problem.New(http.StatusNotFound, "dead-letter-not-found", "Dead letter not found",
			fmt.Sprintf("no dead-lettered message has sequence number %d", seq)))
	case err != nil:
		s.log.ErrorContext(r.Context(), "resubmit dead letter", slog.Int64("seq", seq), slog.String("error", err.Error()))
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable",
			"the message could not be resubmitted; it is still dead-lettered"))
	default:
		s.log.InfoContext(r.Context(), "dead letter resubmitted", slog.Int64("seq", seq), slog.String("messageId", id))
		writeJSON(w, http.StatusOK, resubmitted{SequenceNumber: seq, MessageID: id})
	}
}

// DeadLetter is a dead letter as support tooling shows it: ids, names and reasons. The body
// is included because support needs it to decide; it never reaches the logs.
type DeadLetter struct {
	SequenceNumber int64           `json:"sequenceNumber"`
	MessageID      string          `json:"messageId"`
	CorrelationID  string          `json:"correlationId"`
	Subject        string          `json:"subject"`
	Reason         string          `json:"reason"`
	Description    string          `json:"description"`
	DeliveryCount  int             `json:"deliveryCount"`
	DeadLetteredAt time.Time       `json:"deadLetteredAt"`
	Properties     map[string]any  `json:"properties,omitempty"`
	Body           json.RawMessage `json:"body,omitempty"`
}

// View is d as support sees it.
func View(d queue.DeadLettered) DeadLetter {
	v := DeadLetter{
		SequenceNumber: d.SequenceNumber, MessageID: d.MessageID, CorrelationID: d.CorrelationID,
		Subject: d.Subject, Reason: d.Reason, Description: d.Description,
		DeliveryCount: d.DeliveryCount, DeadLetteredAt: d.DeadLetteredAt, Properties: d.ApplicationProperties,
	}
	if json.Valid(d.Body) {
		v.Body = d.Body
	} else if len(d.Body) > 0 {
		b, _ := json.Marshal(string(d.Body)) // a poison body is shown as text
		v.Body = b
	}
	return v
}

// deadLetterList is the answer to GET /api/deadletters.
type deadLetterList struct {
	DeadLetters []DeadLetter `json:"deadLetters"`
}

// resubmitted is the answer to POST /api/deadletters/{seq}/resubmit.
type resubmitted struct {
	SequenceNumber int64  `json:"sequenceNumber"`
	MessageID      string `json:"messageId"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
