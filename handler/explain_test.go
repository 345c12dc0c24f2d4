package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// explainEnv is a deployment's settings with every downstream, Dataverse included, pointing at
// one server that must get no request, and a data dir that must not be created.
func explainEnv(t *testing.T, extra map[string]string) (func(string) (string, bool), *atomic.Int64, string) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	dataDir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{
		"DVRELAY_ROUTES":     filepath.Join(appRoot, "routes.json"),
		"DVRELAY_DATA_DIR":   dataDir,
		"DVRELAY_CREDIT_URL": srv.URL + "/credit?code=function-key-abc",
		"DVRELAY_ERP_URL":    srv.URL + "/erp",
		"DATAVERSE_URL":      srv.URL,
	}
	for k, v := range extra {
		env[k] = v
	}
	t.Cleanup(func() {
		if n := requests.Load(); n != 0 {
			t.Errorf("the downstream double got %d requests; explain must send nothing", n)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("explain created the data dir %s (%v)", dataDir, err)
		}
	})
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &requests, srv.URL
}

func runExplainCmd(t *testing.T, lookup func(string) (string, bool), args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"explain"}, args...), lookup, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestExplain_accepts_the_sample_and_shows_each_step_with_its_resolved_url_sending_nothing(t *testing.T) {
	lookup, _, url := explainEnv(t, nil)

	code, out, errOut := runExplainCmd(t, lookup, filepath.Join(appRoot, "samples", "opportunity-update.json"), "-H", "Content-Type: application/json")

	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s\nstdout:\n%s", code, errOut, out)
	}
	for _, want := range []string{
		"intake: accepted, 202",
		"  pass  content type: application/json",
		"EventId        ",
		`"EventName": "OpportunityUpdated"`,
		"route credit-check: matches",
		"POST " + url + "/credit?code=REDACTED (${DVRELAY_CREDIT_URL})",
		"PATCH opportunity(c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8) new_creditscore = $steps.credit-score.score",
		"POST " + url + "/erp (${DVRELAY_ERP_URL}) with the whole event",
		"route audit-log: matches",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not hold %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "function-key-abc") {
		t.Errorf("output shows the function key:\n%s", out)
	}
}

func TestExplain_refuses_bad_payloads_with_the_intakes_answer_and_exit_1(t *testing.T) {
	dir := t.TempDir()
	plugin, err := os.ReadFile(filepath.Join(appRoot, "samples", "plugin-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"not-json.json":   []byte("EventName: OpportunityUpdated\n"),
		"wrong-type.json": bytes.Replace(plugin, []byte(`"2025-11-25T07:04:05Z"`), []byte(`20251125`), 1),
		"bad-guid.json":   bytes.Replace(plugin, []byte("c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8"), []byte("c3e9a2b8"), 1),
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, body, 0o600); err != nil {
				t.Fatal(err)
			}
			lookup, _, _ := explainEnv(t, nil)

			code, out, _ := runExplainCmd(t, lookup, path)

			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out)
			}
			_, answer, ok := strings.Cut(out, "application/problem+json:\n")
			answer, _, _ = strings.Cut(answer, "\n\n")
			var problem struct {
				Status int    `json:"status"`
				Type   string `json:"type"`
			}
			if !ok || json.Unmarshal([]byte(answer), &problem) != nil || problem.Status != 400 || !strings.HasSuffix(problem.Type, "/invalid-payload") {
				t.Errorf("output does not end with the 400 problem+json:\n%s", out)
			}
			if !strings.Contains(out, "FAIL  payload") {
				t.Errorf("output does not name the failed check:\n%s", out)
			}
		})
	}
}

func TestExplain_checks_the_secret_and_takes_headers_after_the_file(t *testing.T) {
	lookup, _, _ := explainEnv(t, map[string]string{"DVRELAY_WEBHOOK_SECRET": "old,s3cret"})
	sample := filepath.Join(appRoot, "samples", "size-exceeded.json")

	code, out, _ := runExplainCmd(t, lookup, sample)
	if code != 1 || !strings.Contains(out, "401") || !strings.Contains(out, "-H 'x-dvrelay-secret: <secret>'") {
		t.Errorf("without the secret: exit %d, want 1 with a 401 and how to pass the header:\n%s", code, out)
	}

	code, out, _ = runExplainCmd(t, lookup, sample, "-H", "x-dvrelay-secret: s3cret", "-H", "x-ms-dynamics-msg-size-exceeded: true")
	if code != 0 || !strings.Contains(out, "pass  secret: the x-dvrelay-secret header matches") || !strings.Contains(out, `"Trimmed": true`) {
		t.Errorf("with the secret and the size header: exit %d, want 0, the secret passed and a trimmed event:\n%s", code, out)
	}
}

func TestExplain_usage_errors_exit_2(t *testing.T) {
	lookup, _, _ := explainEnv(t, nil)
	sample := filepath.Join(appRoot, "samples", "plugin-event.json")
	tests := map[string][]string{
		"no file":         nil,
		"two files":       {sample, sample},
		"a bad header":    {sample, "-H", "no colon"},
		"a missing file":  {filepath.Join(t.TempDir(), "missing.json")},
		"an unknown flag": {"--url", "x", sample},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := runExplainCmd(t, lookup, args...)
			if code != 2 || errOut == "" {
				t.Errorf("exit %d, stderr %q; want 2 and a message", code, errOut)
			}
		})
	}
}
