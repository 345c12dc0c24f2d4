package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

func TestLogFormat_is_text_on_a_terminal_and_json_elsewhere_unless_chosen(t *testing.T) {
	cases := []struct {
		setting  string
		terminal bool
		want     string
	}{
		{config.LogFormatAuto, true, config.LogFormatText},
		{config.LogFormatAuto, false, config.LogFormatJSON},
		{config.LogFormatJSON, true, config.LogFormatJSON},
		{config.LogFormatText, false, config.LogFormatText},
	}
	for _, c := range cases {
		if got := logFormat(c.setting, c.terminal); got != c.want {
			t.Errorf("logFormat(%q, terminal %v) = %q, want %q", c.setting, c.terminal, got, c.want)
		}
	}
}

func TestIsTerminal_tells_a_character_device_from_files_and_buffers(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if isTerminal(file) || isTerminal(&bytes.Buffer{}) {
		t.Error("a regular file or a buffer counts as a terminal: a log pipeline would get text")
	}
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer dev.Close()
	if !isTerminal(dev) {
		t.Errorf("%s, a character device like a terminal, does not count as one", os.DevNull)
	}
}

func TestNewLogger_writes_json_lines_to_a_pipe_and_text_when_asked(t *testing.T) {
	var jsonOut, textOut bytes.Buffer
	newLogger(&jsonOut, "info", config.LogFormatAuto).Info("outcome", "eventId", "e1", "reason", "")
	newLogger(&textOut, "info", config.LogFormatText).Info("outcome", "eventId", "e1", "reason", "")

	var line map[string]any
	if err := json.Unmarshal(jsonOut.Bytes(), &line); err != nil || line["eventId"] != "e1" {
		t.Errorf("auto format to a buffer is not a JSON line: %q (%v)", jsonOut.String(), err)
	}
	text := textOut.String()
	if !strings.Contains(text, "msg=outcome eventId=e1") || strings.HasPrefix(text, "{") {
		t.Errorf("text format = %q", text)
	}
	if strings.Contains(text, "reason=") {
		t.Errorf("the text format shows an empty field: %q", text)
	}
}

func TestServe_refuses_zero_max_attempts_naming_the_setting(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := mapEnv(map[string]string{"DVRELAY_MAX_ATTEMPTS": "0"})
	code := run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, env, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `DVRELAY_MAX_ATTEMPTS: "0" is not a positive whole number`) {
		t.Errorf("exit %d\n%s", code, stderr.String())
	}
}

func TestNewLogger_text_shows_only_the_ids_a_person_reads_and_json_keeps_all(t *testing.T) {
	ids := []any{"correlationId", "c-1", "traceId", "0af7651916cd43dd8448eb211c80319c", "spanId", "b7ad6b7169203331",
		"messageId", "m-1", "invocationId", "i-1"}
	var textOut, jsonOut bytes.Buffer
	for _, log := range []*slog.Logger{newLogger(&textOut, "info", config.LogFormatText), newLogger(&jsonOut, "info", config.LogFormatJSON)} {
		log.With(ids...).With("eventId", "e-1").Info("step", "step", "erp-sync")
		log.With(ids...).Info("webhook intake", "status", 400)
	}

	lines := strings.Split(strings.TrimSpace(textOut.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("text output:\n%s", textOut.String())
	}
	for _, hidden := range []string{"traceId=", "spanId=", "messageId=", "invocationId="} {
		if strings.Contains(textOut.String(), hidden) {
			t.Errorf("text shows %s:\n%s", hidden, textOut.String())
		}
	}
	if !strings.Contains(lines[0], "eventId=e-1") || strings.Contains(lines[0], "correlationId") {
		t.Errorf("a line about an event should name it by eventId alone: %s", lines[0])
	}
	if !strings.Contains(lines[1], "correlationId=c-1") {
		t.Errorf("a line with no event should keep its correlationId: %s", lines[1])
	}
	for _, want := range []string{`"traceId"`, `"spanId"`, `"messageId"`, `"invocationId"`, `"correlationId":"c-1","traceId"`} {
		if !strings.Contains(jsonOut.String(), want) {
			t.Errorf("JSON lost %s:\n%s", want, jsonOut.String())
		}
	}
}
