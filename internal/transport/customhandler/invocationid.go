package customhandler

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/dvrelay/dvrelay/internal/platform/logctx"
)

// InvocationIDHeader is the header the host sends with every invocation (HttpWorkerConstants,
// DefaultHttpWorkerService.AddHeaders). The host's own telemetry for the invocation carries
// the same id as customDimensions.InvocationId.
const InvocationIDHeader = "X-Azure-Functions-InvocationId"

// InvocationIDKey is the log key of the invocation id on the handler's lines.
const InvocationIDKey = "invocationId"

// InvocationContext returns the request's context carrying the host's invocation id for every
// log line written for the invocation (see logctx). With Service Bus extension 5.x the host's
// request starts a new operation and only links to the message's trace, so the invocation id
// is what joins the handler's lines to the host's rows of the same invocation.
func InvocationContext(r *http.Request) context.Context {
	ctx := r.Context()
	if id := r.Header.Get(InvocationIDHeader); id != "" {
		ctx = logctx.With(ctx, slog.String(InvocationIDKey, id))
	}
	return ctx
}
