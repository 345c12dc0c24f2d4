package worker

import (
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// deliverySpan is the span of one delivery: a child of the span the message carries (the
// intake's, written as Diagnostic-Id and traceparent; a retry or resubmitted copy keeps it), so
// that Application Insights shows the webhook, the queue and each downstream call as one
// operation. A message without one (a direct Service Bus service endpoint, an older sender)
// starts a new trace. Each delivery gets its own span id, so two deliveries of one message are
// told apart in the trace.
func deliverySpan(d queue.Delivery) tracecontext.SpanContext {
	return tracecontext.Continue(tracecontext.FromProperties(d.ApplicationProperties))
}
