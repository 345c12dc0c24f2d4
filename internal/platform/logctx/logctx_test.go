package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
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
