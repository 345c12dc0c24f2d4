package worker_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/worker"
)

func writeRoutes(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNew_rejects_a_routes_file_with_errors_naming_route_step_and_field(t *testing.T) {
	tests := []struct {
		name   string
		routes string
		want   []string
	}{
		{
			name:   "http step without url",
			routes: `{"routes":[{"name":"credit-check","steps":[{"name":"log","type":"log"},{"name":"write-score","type":"http"}]}]}`,
			want:   []string{`route "credit-check" step 2 ("write-score")`, "url is required"},
		},
		{
			name:   "url setting that is not an http URL",
			routes: `{"routes":[{"name":"credit-check","steps":[{"name":"score","type":"http","url":"${DVRELAY_FTP_URL}"}]}]}`,
			want:   []string{`route "credit-check" step 1 ("score")`, `url: setting DVRELAY_FTP_URL is "ftp://files.example.com/", which is not an absolute http(s) URL`},
		},
		{
			name:   "url setting without a scheme",
			routes: `{"routes":[{"name":"erp-sync","steps":[{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]}]}`,
			want: []string{`route "erp-sync" step 1 ("erp")`,
				`url: setting DVRELAY_ERP_URL is "127.0.0.1:7082/erp", which lacks http:// or https:// (e.g. http://127.0.0.1:7082/erp)`},
		},
		{
			name:   "unknown step type",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"s","type":"smtp"}]}]}`,
			want:   []string{`route "r1" step 1 ("s")`, `type: unknown step type "smtp"`, "dataverse-update, http, log"},
		},
		{
			name:   "reference to a later step",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"w","type":"dataverse-update","set":{"new_x":"$steps.score.value"}},{"name":"score","type":"http","url":"http://127.0.0.1:1/x"}]}]}`,
			want:   []string{`route "r1" step 1 ("w")`, `step "score" is not an earlier step`},
		},
		{
			name:   "column that is not a logical name",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"w","type":"dataverse-update","set":{"New Score":1}}]}]}`,
			want:   []string{`route "r1" step 1 ("w")`, `"New Score" is not a Dataverse column logical name`},
		},
		{
			name:   "misspelt field of a built-in step",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"s","type":"http","url":"http://127.0.0.1:1/","expects":{"score":"number"}}]}]}`,
			want:   []string{`route "r1" step 1 ("s")`, "expects"},
		},
		{
			name:   "bad timeout",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"s","type":"log","timeout":"10 minutes"}]}]}`,
			want:   []string{`route "r1" step 1 ("s")`, "timeout"},
		},
		{
			name:   "duplicate step names",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"s","type":"log"},{"name":"s","type":"log"}]}]}`,
			want:   []string{`route "r1" step 2 ("s")`, "used by an earlier step"},
		},
		{
			name:   "duplicate route names",
			routes: `{"routes":[{"name":"r1","steps":[{"name":"s","type":"log"}]},{"name":"r1","steps":[{"name":"s","type":"log"}]}]}`,
			want:   []string{`route "r1": name: used by an earlier route`},
		},
		{
			name:   "unknown match condition",
			routes: `{"routes":[{"name":"r1","match":{"entityName":"account"},"steps":[{"name":"s","type":"log"}]}]}`,
			want:   []string{`route "r1"`, "entityName"},
		},
		{
			name:   "no routes",
			routes: `{"routes":[]}`,
			want:   []string{"routes"},
		},
		{
			name:   "not JSON",
			routes: `{"routes":[`,
			want:   []string{"not JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRoutes(t, tt.routes)
			settings := map[string]string{"DVRELAY_FTP_URL": "ftp://files.example.com/?code=secret-key", "DVRELAY_ERP_URL": "127.0.0.1:7082/erp?code=secret-key"}
			_, err := worker.New(worker.Config{RoutesPath: path},
				worker.Deps{Decoder: newDecoder(t), Settings: func(k string) (string, bool) { v, ok := settings[k]; return v, ok }},
				slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "secret-key") {
				t.Errorf("error %q shows a setting's value", msg)
			}
		})
	}
}

func TestNew_accepts_the_default_routes_file(t *testing.T) {
	_, err := worker.New(worker.Config{RoutesPath: "../../routes.json"},
		worker.Deps{Decoder: newDecoder(t), Settings: func(string) (string, bool) { return "", false }},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New with the shipped routes.json and no settings: %v", err)
	}
}
