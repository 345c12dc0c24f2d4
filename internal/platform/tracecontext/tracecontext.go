// Package tracecontext reads, continues and writes W3C Trace Context (the traceparent header,
// https://www.w3.org/TR/trace-context/), so that Application Insights' end-to-end view links the
// webhook call, the queue message and every downstream call the worker makes for it. It records
// no spans and exports nothing: the Functions host and the downstream services do that; this
// package only keeps the ids flowing.
package tracecontext

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// TraceID names one trace: every hop of one event shares it.
type TraceID [16]byte

// SpanID names one operation within a trace.
type SpanID [8]byte

func (t TraceID) String() string { return hex.EncodeToString(t[:]) }
func (s SpanID) String() string  { return hex.EncodeToString(s[:]) }

// FlagSampled is the only trace flag version 00 defines: the caller may have recorded its span,
// so downstream services should keep theirs for the end-to-end view.
const FlagSampled byte = 0x01

// SpanContext is what a traceparent carries. The zero value is "no trace".
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID
	Flags   byte
}

// IsValid reports whether sc names a trace and a span: W3C forbids all-zero ids.
func (sc SpanContext) IsValid() bool { return sc.TraceID != TraceID{} && sc.SpanID != SpanID{} }

// String is the traceparent value: 00-<trace-id>-<span-id>-<flags>, lower-case hex.
func (sc SpanContext) String() string {
	return fmt.Sprintf("00-%s-%s-%02x", sc.TraceID, sc.SpanID, sc.Flags)
}

// ErrInvalid reports a traceparent (or legacy Request-Id) that does not follow the format.
var ErrInvalid = errors.New("tracecontext: invalid traceparent")

// traceparentLen is the length of a version 00 traceparent: 2+1+32+1+16+1+2.
const traceparentLen = 55

// Parse reads a traceparent value. A version other than 00 (but not the forbidden ff) is read as
// far as version 00 goes, as the specification asks, so a newer caller is still followed. Flags
// this version does not define are dropped: they would be forwarded with a version 00 header.
func Parse(v string) (SpanContext, error) {
	if len(v) < traceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return SpanContext{}, ErrInvalid
	}
	var version [1]byte
	if !decodeLowerHex(version[:], v[0:2]) || version[0] == 0xff {
		return SpanContext{}, ErrInvalid
	}
	if (version[0] == 0 && len(v) != traceparentLen) || (len(v) > traceparentLen && v[traceparentLen] != '-') {
		return SpanContext{}, ErrInvalid
	}
	var sc SpanContext
	var flags [1]byte
	if !decodeLowerHex(sc.TraceID[:], v[3:35]) || !decodeLowerHex(sc.SpanID[:], v[36:52]) || !decodeLowerHex(flags[:], v[53:55]) {
		return SpanContext{}, ErrInvalid
	}
	if !sc.IsValid() {
		return SpanContext{}, ErrInvalid
	}
	sc.Flags = flags[0] & FlagSampled
	return sc, nil
}

// ParseRequestID reads the hierarchical Request-Id of Application Insights SDKs (and the
// Diagnostic-Id of older Service Bus SDKs) in its W3C-compatible form, |<trace-id>.<span-id>.,
// which is what those SDKs send when W3C correlation is on. Other forms carry no W3C trace id.
// The sampled flag is set: those SDKs record their telemetry.
func ParseRequestID(v string) (SpanContext, error) {
	const n = 1 + 32 + 1 + 16 + 1
	if len(v) != n || v[0] != '|' || v[33] != '.' || v[50] != '.' {
		return SpanContext{}, ErrInvalid
	}
	sc := SpanContext{Flags: FlagSampled}
	if !decodeLowerHex(sc.TraceID[:], v[1:33]) || !decodeLowerHex(sc.SpanID[:], v[34:50]) || !sc.IsValid() {
		return SpanContext{}, ErrInvalid
	}
	return sc, nil
}

// decodeLowerHex fills dst from exactly 2*len(dst) lower-case hex digits: the specification
// allows no upper case, and hex.Decode would accept it.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// Continue starts this service's span: a child of parent (same trace, new span id, the
// caller's sampled flag) when parent is valid, or the root of a new, sampled trace otherwise.
// A new trace is sampled so that an instrumented downstream service keeps its telemetry.
func Continue(parent SpanContext) SpanContext {
	sc := SpanContext{TraceID: parent.TraceID, Flags: parent.Flags}
	if !parent.IsValid() {
		sc = SpanContext{Flags: FlagSampled}
		for sc.TraceID == (TraceID{}) {
			_, _ = rand.Read(sc.TraceID[:]) // crypto/rand.Read never fails
		}
	}
	for sc.SpanID == (SpanID{}) || sc.SpanID == parent.SpanID {
		_, _ = rand.Read(sc.SpanID[:])
	}
	return sc
}

type contextKey struct{}

// NewContext returns a context that carries sc to the downstream calls made under it.
func NewContext(ctx context.Context, sc SpanContext) context.Context {
	return context.WithValue(ctx, contextKey{}, sc)
}

// FromContext returns the span context carried by ctx, if a valid one is there.
func FromContext(ctx context.Context) (SpanContext, bool) {
	sc, ok := ctx.Value(contextKey{}).(SpanContext)
	return sc, ok && sc.IsValid()
}
