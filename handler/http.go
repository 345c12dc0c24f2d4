package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// health answers GET /api/health: 200 with the queue counts, 503 when the queue cannot be read.
func (a *app) health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{"status": "ok", "backend": a.backend.name}
		if a.backend.stats != nil {
			s, err := a.backend.stats(r.Context())
			if err != nil {
				a.log.ErrorContext(r.Context(), "health: read queue", slog.String("error", err.Error()))
				writeProblem(w, http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable",
					"the embedded queue could not be read")
				return
			}
			body["queued"] = s.Queued
			body["scheduled"] = s.Scheduled
			body["deadLettered"] = s.DeadLettered
			body["oldestQueuedAgeSeconds"] = s.OldestQueuedAge.Seconds()
		}
		writeJSON(w, http.StatusOK, body)
	})
}

// deadLetterRoutes lets support list and resubmit dead letters of a running `handler serve`
// (the embedded queue's file belongs to that process). When a webhook secret is configured the
// same header is required here too.
func (a *app) deadLetterRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/deadletters", a.admin(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				writeProblem(w, http.StatusBadRequest, "invalid-query", "Invalid query", "limit must be a whole number from 1 to 1000")
				return
			}
			limit = n
		}
		items, err := a.backend.deadLetters.ListDeadLetters(r.Context(), limit)
		if err != nil {
			a.log.ErrorContext(r.Context(), "list dead letters", slog.String("error", err.Error()))
			writeProblem(w, http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable", "the dead-letter queue could not be read")
			return
		}
		out := make([]deadLetterView, 0, len(items))
		for _, d := range items {
			out = append(out, viewOf(d))
		}
		writeJSON(w, http.StatusOK, map[string]any{"deadLetters": out})
	}))
	mux.Handle("POST /api/deadletters/{seq}/resubmit", a.admin(func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
		if err != nil || seq < 1 {
			writeProblem(w, http.StatusBadRequest, "invalid-sequence-number", "Invalid sequence number", "the sequence number must be a positive whole number")
			return
		}
		id, err := a.backend.deadLetters.Resubmit(r.Context(), seq)
		switch {
		case errors.Is(err, queue.ErrNotFound):
			writeProblem(w, http.StatusNotFound, "dead-letter-not-found", "Dead letter not found", fmt.Sprintf("no dead-lettered message has sequence number %d", seq))
		case err != nil:
			a.log.ErrorContext(r.Context(), "resubmit dead letter", slog.Int64("seq", seq), slog.String("error", err.Error()))
			writeProblem(w, http.StatusServiceUnavailable, "queue-unavailable", "Queue unavailable", "the message could not be resubmitted; it is still dead-lettered")
		default:
			a.log.InfoContext(r.Context(), "dead letter resubmitted", slog.Int64("seq", seq), slog.String("messageId", id))
			writeJSON(w, http.StatusOK, map[string]any{"sequenceNumber": seq, "messageId": id})
		}
	}))
}

// admin guards support routes with the webhook secret, when one is configured.
func (a *app) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.cfg.WebhookSecrets) > 0 {
			got := []byte(r.Header.Get(a.cfg.SecretHeader))
			ok := 0
			for _, s := range a.cfg.WebhookSecrets {
				ok |= subtle.ConstantTimeCompare(got, []byte(s))
			}
			if ok != 1 {
				writeProblem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized",
					"the "+a.cfg.SecretHeader+" header is missing or wrong")
				return
			}
		}
		h(w, r)
	})
}

// deadLetterView is a dead letter as support tooling shows it: ids, names and reasons. The body
// is included because support needs it to decide; it never reaches the logs.
type deadLetterView struct {
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

func viewOf(d queue.DeadLettered) deadLetterView {
	v := deadLetterView{
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeProblem answers an RFC 9457 problem for the handler's own routes (the intake has its own).
func writeProblem(w http.ResponseWriter, status int, kind, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   webhook.ProblemTypeBase + kind,
		"title":  title,
		"status": status,
		"detail": detail,
	})
}
