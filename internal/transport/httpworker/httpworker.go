// Package httpworker serves the worker as the Functions host calls it for the Service Bus
// trigger (POST /EventWorker with an invocation envelope). The host owns the message lock and
// settles it from the status alone: 2xx completes, anything else abandons and redelivers at
// once. So the worker's outcome is made true here, before answering, by the trigger's Settler
// (servicebus.TriggerSettler: a retry is scheduled as a copy and a dead letter is sent to the
// dead-letter queue); only when that fails is the answer 500, and then the host's redelivery
// loses nothing.
package httpworker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

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

// New returns the POST /<FunctionName> handler for a serviceBusTrigger binding named binding;
// s applies the outcomes.
func New(h Handler, s queue.Settler, binding string, log *slog.Logger) http.Handler {
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
		out := h.Process(ctx, d)
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
