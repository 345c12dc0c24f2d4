// Package logctx carries log attributes in a context, for the ids that belong to every line
// written for one unit of work (the Functions host's invocation id) but are known only at the
// edge that received it. The edge adds them with With; a Handler built with NewHandler writes
// them on every record logged with that context, and code that keeps its own logger for the
// unit of work adds them with Args.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns ctx carrying attrs beside any it carried already.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	prev := Attrs(ctx)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, key{}, all)
}

// Attrs returns the attributes ctx carries.
func Attrs(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	attrs, _ := ctx.Value(key{}).([]slog.Attr)
	return attrs
}

// Args returns the attributes ctx carries as arguments for slog.Logger.With.
func Args(ctx context.Context) []any {
	attrs := Attrs(ctx)
	args := make([]any, len(attrs))
	for i, a := range attrs {
		args[i] = a
	}
	return args
}

// NewHandler wraps h so that every record logged with a context gets that context's attributes,
// except those a logger already carries from With (Args): a key is written once.
func NewHandler(h slog.Handler) slog.Handler { return handler{next: h} }

type handler struct {
	next slog.Handler
	has  map[string]bool // keys added with WithAttrs
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := Attrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		for _, a := range attrs {
			if !h.has[a.Key] {
				r.AddAttrs(a)
			}
		}
	}
	return h.next.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	has := make(map[string]bool, len(h.has)+len(attrs))
	for k := range h.has {
		has[k] = true
	}
	for _, a := range attrs {
		has[a.Key] = true
	}
	return handler{next: h.next.WithAttrs(attrs), has: has}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{next: h.next.WithGroup(name), has: h.has}
}
