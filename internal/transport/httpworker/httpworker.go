// Package httpworker serves the worker as the Functions host calls it for the Service Bus
// trigger (POST /EventWorker with an invocation envelope). The host owns the message lock and
// settles it from the status alone: 2xx completes, anything else abandons and redelivers at
// once. So the worker's outcome is made true here, before answering, by the trigger's Settler
// (servicebus.TriggerSettler: a retry is scheduled as a copy and a dead letter is sent to the
// dead-letter queue); only when that fails is the answer 500, and then the host's redelivery
// loses nothing.
//
// On a session-enabled queue (the invocation names a SessionId) a retry keeps its place in its
// record's session instead: see worker.InPlacePolicy for the design. The invocation waits the
// back-off, up to Options.MaxHold, and answers 503 so the host abandons the message, which
// Service Bus serves again first in its session with the delivery count raised; that count is
// the attempt the worker sees.
package httpworker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
)

// Handler is what the adapter needs from *worker.Worker.
type Handler interface {
	Process(ctx context.Context, d queue.Delivery) queue.Outcome
}

// maxInvocationBytes bounds an invocation body: a Service Bus message is at most 256 KB on
// Standard (100 MB on Premium, which dvrelay does not need), and the host encodes it at most
// twice plus base64.
const maxInvocationBytes = 8 << 20

// Options tune the retry in place of a session delivery.
type Options struct {
	// MaxHold bounds how long one invocation waits for its message's next attempt
	// (worker.InPlaceHold in production); 0 answers at once.
	MaxHold time.Duration
	// Now is the clock the wait is measured on; nil means time.Now.
	Now func() time.Time
}

// New returns the POST /<FunctionName> handler for a serviceBusTrigger binding named binding;
// s applies the outcomes.
func New(h Handler, s queue.Settler, binding string, log *slog.Logger, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Every line written for this invocation, the worker's included, carries its id.
		ctx := customhandler.InvocationContext(req)
		body, err := io.ReadAll(io.LimitReader(req.Body, maxInvocationBytes+1))
		if err == nil && len(body) > maxInvocationBytes {
			// Not the worker's to judge: the host redelivers it until the broker dead-letters it
			// (MaxDeliveryCountExceeded), where the original stays intact for support.
			err = fmt.Errorf("invocation is larger than %d bytes", maxInvocationBytes)
		}
		if err != nil {
			customhandler.WriteFailure(ctx, w, log, fmt.Errorf("read invocation: %w", err))
			return
		}
		msg, err := customhandler.DecodeServiceBusTrigger(body, binding)
		if err != nil {
			// An envelope we cannot read is not the message's fault: let the host redeliver it
			// (and, after max deliveries, dead-letter it) rather than complete it unseen.
			customhandler.WriteFailure(ctx, w, log, fmt.Errorf("decode invocation: %w", err))
			return
		}
		d := queue.Delivery{
			MessageID:             msg.MessageID,
			CorrelationID:         msg.CorrelationID,
			Subject:               msg.Subject,
			SessionID:             msg.SessionID,
			Body:                  msg.Body,
			DeliveryCount:         max(msg.DeliveryCount, 1),
			ApplicationProperties: msg.ApplicationProperties,
			EnqueuedTime:          msg.EnqueuedTime,
		}
		inPlace := d.SessionID != ""
		if inPlace {
			d.ApplicationProperties = withAttempt(d.ApplicationProperties, d.DeliveryCount)
		}
		out := h.Process(ctx, d)
		if inPlace && out.Kind == queue.RetryLater {
			holdInPlace(ctx, w, log, d, out, opts)
			return
		}
		if err := s.Settle(ctx, d, out); err != nil {
			customhandler.WriteFailure(ctx, w, log, fmt.Errorf("apply outcome %s: %w", out.Kind, err),
				slog.String("messageId", msg.MessageID),
				slog.String("correlationId", msg.CorrelationID))
			return
		}
		var logs []string
		if out.Summary != "" {
			logs = append(logs, out.Summary)
		}
		if err := customhandler.WriteResult(w, logs); err != nil {
			log.ErrorContext(ctx, "write invocation result", slog.String("error", err.Error()))
		}
	})
}

// withAttempt is props with the Attempt property set to the delivery count: a retry in place
// is the same message delivered again, so its delivery count numbers its attempts.
func withAttempt(props map[string]any, deliveryCount int) map[string]any {
	out := make(map[string]any, len(props)+1)
	maps.Copy(out, props)
	out[queue.PropAttempt] = int64(deliveryCount)
	return out
}

// holdInPlace waits until out.RetryAt (at most opts.MaxHold, and no longer than the host
// waits for the answer) and answers 503: the host abandons the message, and its session serves
// it again first. Holding the invocation holds the session, so the record's later events wait.
func holdInPlace(ctx context.Context, w http.ResponseWriter, log *slog.Logger, d queue.Delivery, out queue.Outcome,
	opts Options) {
	wait := min(out.RetryAt.Sub(opts.Now()), opts.MaxHold)
	log.InfoContext(ctx, "retry in place: waiting in the invocation, then abandoning to the head of the session",
		slog.String("messageId", d.MessageID),
		slog.String("correlationId", d.CorrelationID), slog.String("sessionId", d.SessionID),
		slog.Int("attempt", d.Attempt()), slog.Int64("waitMs", max(wait, 0).Milliseconds()))
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done(): // the host gave up or is stopping: the abandon comes back all the same
			t.Stop()
		}
	}
	var logs []string
	if out.Summary != "" {
		logs = append(logs, out.Summary)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]any{"Outputs": map[string]any{}, "Logs": logs, "ReturnValue": nil})
}
