package main

import (
	"bytes"
	"encoding/json"
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
