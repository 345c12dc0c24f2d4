// Package logctx carries log attributes in a context, for the ids that belong to every line
// written for one unit of work (the Functions host's invocation id) but are known only at the
// edge that received it. The edge adds them with With; a Handler built with NewHandler writes
// them on every record logged with that context, and code that keeps its own logger for the
// unit of work adds them with Args.
package logctx

import (
	"context"
	"log/slog"
	"maps"
	"sync"
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
//
// A logger's With reaches h's WithAttrs only when a record is first written through it. slog's
// own handlers format attributes as they are added, and the loggers made for one event (the
// worker makes several) mostly write nothing at the level a busy service runs at: formatted
// eagerly, their attributes were a thirtieth of the service's CPU at saturation. This assumes,
// as slog's handlers and this project's have it, that attributes and groups do not change what
// a handler enables.
func NewHandler(h slog.Handler) slog.Handler { return handler{n: &node{next: h, root: h}} }

type handler struct{ n *node }

// node is one step of a logger's derivation, attributes or a group added to its parent's, made
// into the wrapped handler's own derivation (next) once, when a record is first written.
type node struct {
	root   slog.Handler // the handler NewHandler wrapped
	parent *node        // nil at the root, whose next is set from the start
	attrs  []slog.Attr
	group  string

	once sync.Once
	next slog.Handler
	has  map[string]bool // keys added with WithAttrs along the way
}

func (n *node) resolve() (slog.Handler, map[string]bool) {
	if n.parent == nil {
		return n.next, nil
	}
	n.once.Do(func() {
		next, has := n.parent.resolve()
		if n.attrs == nil {
			n.next, n.has = next.WithGroup(n.group), has
			return
		}
		n.has = make(map[string]bool, len(has)+len(n.attrs))
		maps.Copy(n.has, has)
		for _, a := range n.attrs {
			n.has[a.Key] = true
		}
		n.next = next.WithAttrs(n.attrs)
	})
	return n.next, n.has
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.n.root.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	next, has := h.n.resolve()
	if attrs := Attrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		for _, a := range attrs {
			if !has[a.Key] {
				r.AddAttrs(a)
			}
		}
	}
	return next.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return handler{n: &node{root: h.n.root, parent: h.n, attrs: attrs}}
}

func (h handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return handler{n: &node{root: h.n.root, parent: h.n, group: name}}
}
