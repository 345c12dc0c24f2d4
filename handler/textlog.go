package main

import (
	"context"
	"log/slog"
)

// operatorText is the text format's handler for a person at a terminal. It holds back the
// attributes a logger adds with With, so that each line can be judged whole: a line that
// names its event by eventId leaves out correlationId, which says nothing more to a person
// (JSON lines keep both). The rest of the shortening is readableAttr's.
type operatorText struct {
	next  slog.Handler
	attrs []slog.Attr // from WithAttrs, written with each line
}

func newOperatorText(next slog.Handler) slog.Handler { return operatorText{next: next} }

func (h operatorText) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h operatorText) Handle(ctx context.Context, r slog.Record) error {
	all := make([]slog.Attr, 0, len(h.attrs)+r.NumAttrs())
	all = append(all, h.attrs...)
	r.Attrs(func(a slog.Attr) bool { all = append(all, a); return true })
	named := false
	for _, a := range all {
		if a.Key == "eventId" && a.Value.String() != "" {
			named = true
		}
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	for _, a := range all {
		if named && a.Key == "correlationId" {
			continue
		}
		out.AddAttrs(a)
	}
	return h.next.Handle(ctx, out)
}

func (h operatorText) WithAttrs(attrs []slog.Attr) slog.Handler {
	held := make([]slog.Attr, 0, len(h.attrs)+len(attrs))
	return operatorText{next: h.next, attrs: append(append(held, h.attrs...), attrs...)}
}

// WithGroup hands what it holds to the text handler first: attributes after a group belong in
// it, and no line of dvrelay's uses groups.
func (h operatorText) WithGroup(name string) slog.Handler {
	return operatorText{next: h.next.WithAttrs(h.attrs).WithGroup(name)}
}
