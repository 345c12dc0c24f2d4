package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/logctx"
)

func TestHandler_writes_the_contexts_attributes_on_every_line_logged_with_it(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(logctx.NewHandler(slog.NewJSONHandler(&buf, nil))).With("component", "intake")
	ctx := logctx.With(context.Background(), slog.String("invocationId", "inv-1"))

	log.InfoContext(ctx, "with")
	log.Info("without")
	log.With(logctx.Args(ctx)...).Info("kept")
	log.With(logctx.Args(ctx)...).InfoContext(ctx, "once")

	if n := bytes.Count(buf.Bytes(), []byte(`"invocationId"`)); n != 3 {
		t.Errorf("invocationId written %d times in three lines, want once a line:\n%s", n, buf.String())
	}
	dec := json.NewDecoder(&buf)
	want := map[string]string{"with": "inv-1", "without": "", "kept": "inv-1", "once": "inv-1"}
	for range want {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		got, _ := line["invocationId"].(string)
		if got != want[line["msg"].(string)] || line["component"] != "intake" {
			t.Errorf("line %v: invocationId %q, want %q", line, got, want[line["msg"].(string)])
		}
	}
}

// countingHandler counts the WithAttrs calls that reach the handler it wraps.
type countingHandler struct {
	slog.Handler
	withAttrs *int
}

func (h countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	*h.withAttrs++
	return countingHandler{h.Handler.WithAttrs(attrs), h.withAttrs}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.withAttrs}
}

func TestHandler_formats_a_loggers_attributes_only_once_it_writes_a_line(t *testing.T) {
	var buf bytes.Buffer
	calls := 0
	inner := countingHandler{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), &calls}
	log := slog.New(logctx.NewHandler(inner))

	quiet := log.With("messageId", "m-1").With("step", "erp")
	quiet.Info("below the level")
	if calls != 0 || buf.Len() != 0 {
		t.Fatalf("a logger that wrote nothing made %d WithAttrs calls and wrote %q", calls, buf.String())
	}

	loud := log.With("messageId", "m-2").With("step", "credit")
	loud.Warn("first")
	loud.Warn("second")
	if calls != 2 {
		t.Errorf("two With calls reached the wrapped handler %d times over two lines, want 2", calls)
	}
	if n := bytes.Count(buf.Bytes(), []byte(`"messageId":"m-2","step":"credit"`)); n != 2 {
		t.Errorf("the attributes written on %d lines, want 2:\n%s", n, buf.String())
	}
}

func TestHandler_writes_attributes_and_groups_as_the_wrapped_handler_does(t *testing.T) {
	noTime := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}}
	var direct, wrapped bytes.Buffer
	for _, log := range []*slog.Logger{
		slog.New(slog.NewJSONHandler(&direct, noTime)),
		slog.New(logctx.NewHandler(slog.NewJSONHandler(&wrapped, noTime))),
	} {
		base := log.With("component", "worker")
		step := base.WithGroup("step").With("name", "erp", "attempt", 2)
		step.Info("called", "status", 202)
		base.WithGroup("").With().Info("plain")
		step.WithGroup("downstream").Warn("slow", "ms", 900)
	}
	if direct.String() != wrapped.String() {
		t.Errorf("wrapped handler wrote\n%s\nwant\n%s", wrapped.String(), direct.String())
	}
}

// BenchmarkWith_below_the_level is the worker's per-event logger at the level a busy service
// runs at: made with the event's attributes, and writing nothing.
func BenchmarkWith_below_the_level(b *testing.B) {
	log := slog.New(logctx.NewHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	b.ReportAllocs()
	for b.Loop() {
		l := log.With("messageId", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "correlationId", "00f067aa-0ba9-02b7-0000-000000000001", "attempt", 1)
		l.With("step", "erp").Info("called", "status", 202)
	}
}
