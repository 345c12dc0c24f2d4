package tracecontext

import "net/http"

// Header names, as W3C Trace Context and the Application Insights SDKs spell them.
const (
	HeaderTraceparent = "traceparent"
	HeaderRequestID   = "Request-Id"
)

// Application property names on a queue message, as the Service Bus SDKs write them: the
// Functions Service Bus trigger reads Diagnostic-Id to link its invocation to the sender.
const (
	PropDiagnosticID = "Diagnostic-Id"
	PropTraceparent  = "traceparent"
)

// FromHeader returns the caller's span context: traceparent, or else a W3C-compatible
// Request-Id. It returns the zero SpanContext when neither is there or valid; the specification
// asks a receiver to start a new trace then, not to fail the request. A traceparent sent twice
// is invalid as a whole.
func FromHeader(h http.Header) SpanContext {
	if vs := h.Values(HeaderTraceparent); len(vs) > 0 {
		if len(vs) == 1 {
			if sc, err := Parse(vs[0]); err == nil {
				return sc
			}
		}
		// An invalid traceparent is not rescued by a Request-Id: the caller meant W3C.
		return SpanContext{}
	}
	if vs := h.Values(HeaderRequestID); len(vs) == 1 {
		if sc, err := ParseRequestID(vs[0]); err == nil {
			return sc
		}
	}
	return SpanContext{}
}

// FromProperties returns the span context a queue message carries: the traceparent property,
// or else Diagnostic-Id in either form the Service Bus SDKs have used (a traceparent value, or
// a W3C-compatible hierarchical id). It returns the zero SpanContext when none is valid.
func FromProperties(props map[string]any) SpanContext {
	if v, ok := props[PropTraceparent].(string); ok {
		if sc, err := Parse(v); err == nil {
			return sc
		}
	}
	if v, ok := props[PropDiagnosticID].(string); ok {
		if sc, err := Parse(v); err == nil {
			return sc
		}
		if sc, err := ParseRequestID(v); err == nil {
			return sc
		}
	}
	return SpanContext{}
}

// SetProperties writes sc on a message's application properties under both names, so that
// both the Functions trigger (Diagnostic-Id) and W3C-only readers (traceparent) follow it.
func SetProperties(props map[string]any, sc SpanContext) {
	v := sc.String()
	props[PropDiagnosticID] = v
	props[PropTraceparent] = v
}
