package worker_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/functions/worker"
)

// at returns the "line:column" of the first occurrence of needle in content, 1-based, the
// column counted in characters, as an editor shows it.
func at(t *testing.T, content, needle string) string {
	t.Helper()
	i := strings.Index(content, needle)
	if i < 0 {
		t.Fatalf("%q is not in the routes file", needle)
	}
	return lineCol(content, i)
}

func loadRoutesError(t *testing.T, content string) (string, error) {
	t.Helper()
	path := writeRoutes(t, content)
	_, err := worker.New(worker.Config{RoutesPath: path},
		worker.Deps{Decoder: newDecoder(t), Settings: func(string) (string, bool) { return "", false }},
		slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("New succeeded, want an error")
	}
	t.Log(err)
	return path, err
}

func TestNew_reports_every_routes_file_problem_at_once_with_line_column_and_words(t *testing.T) {
	content := `{
  "routes": [
    {
      "name": "credit-check",
      "steps": [
        {"name": "score", "type": "http", "url": "http://127.0.0.1:1/", "timeout": "ten"},
        {"name": "write", "type": "smtp"},
        {"name": "erp", "type": "http", "url": "http://127.0.0.1:1/", "expects": {"ok": "boolean"}},
        {"name": "slow", "type": "log", "timeout": "5m"}
      ]
    },
    {
      "name": "bad name!",
      "match": {"entityName": "account"},
      "steps": []
    },
    {
      "name": "credit-check",
      "steps": [{"name": "log", "type": "log", "timeout": 10}]
    }
  ]
}
`
	path, err := loadRoutesError(t, content)
	want := []string{
		path + ":" + at(t, content, `"ten"`) + `: route "credit-check" step 1 ("score"): timeout "ten" is not a duration (e.g. 10s)`,
		path + ":" + at(t, content, `"smtp"`) + `: route "credit-check" step 2 ("write"): type: unknown step type "smtp" (known: dataverse-read, dataverse-update, http, log)`,
		path + ":" + at(t, content, `"expects"`) + `: route "credit-check" step 3 ("erp"): unknown field "expects" (known: body, expect, name, timeout, type, url)`,
		path + ":" + at(t, content, `"5m"`) + `: route "credit-check" step 4 ("slow"): timeout "5m" is longer than 2m0s, the most one try may take`,
		path + ":" + at(t, content, `"bad name!"`) + `: route "bad name!": name "bad name!" must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit`,
		path + ":" + at(t, content, `"entityName"`) + `: route "bad name!": match: unknown field "entityName" (known: anyChanged, entity, eventName, messages, modes, organizationId, parameters, stages)`,
		path + ":" + at(t, content, `[]`) + `: route "bad name!": steps: list at least one step`,
		path + ":" + lineCol(content, strings.LastIndex(content, `"credit-check"`)) + `: route "credit-check": name: used by an earlier route`,
		path + ":" + at(t, content, `10}`) + `: route "credit-check" step 1 ("log"): timeout must be a string such as "10s", not a number`,
	}

	msg := err.Error()
	lines := strings.Split(msg, "\n")
	if got, wantHead := lines[0], fmt.Sprintf("%s: %d problems:", path, len(want)); got != wantHead {
		t.Errorf("first line = %q, want %q", got, wantHead)
	}
	for _, w := range want {
		if !containsLine(lines[1:], w) {
			t.Errorf("no line\n\t%s\nin\n%s", w, msg)
		}
	}
	if len(lines)-1 != len(want) {
		t.Errorf("%d problem lines, want %d", len(lines)-1, len(want))
	}
	if strings.Contains(msg, "pattern") || strings.Contains(msg, "^[") {
		t.Errorf("the error shows a raw regular expression:\n%s", msg)
	}
	var rerr *worker.RoutesError
	if !errors.As(err, &rerr) || len(rerr.Problems) != len(want) {
		t.Fatalf("error is not a *worker.RoutesError with %d problems: %#v", len(want), err)
	}
	for i := 1; i < len(rerr.Problems); i++ {
		a, b := rerr.Problems[i-1], rerr.Problems[i]
		if a.Line > b.Line || (a.Line == b.Line && a.Column > b.Column) {
			t.Errorf("problems are not in file order: %v before %v", a, b)
		}
	}
}

// lineCol returns the "line:column" of byte offset i of content.
func lineCol(content string, i int) string {
	line := strings.Count(content[:i], "\n") + 1
	col := utf8.RuneCountInString(content[strings.LastIndex(content[:i], "\n")+1:i]) + 1
	return fmt.Sprintf("%d:%d", line, col)
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

func TestNew_places_a_routes_file_problem_found_by_a_step_type_at_its_field(t *testing.T) {
	content := "{\"routes\": [{\"name\": \"r1\", \"steps\": [\n" +
		"  {\"name\": \"w\", \"type\": \"dataverse-update\", \"set\": {\"ok_column\": 1, \"New Score\": 1}},\n" +
		"  {\"name\": \"é\", \"type\": \"log\"},\n" +
		"  {\"name\": \"s\", \"type\": \"http\", \"url\": \"ftp://x/\"}\n" +
		"]}]}"
	path, err := loadRoutesError(t, content)
	for _, w := range []string{
		path + ":" + at(t, content, `"New Score"`) + `: route "r1" step 1 ("w"): set.New Score: "New Score" is not a Dataverse column logical name`,
		path + ":" + at(t, content, `"é"`) + `: route "r1" step 2 ("é"): name "é" must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit`,
		path + ":" + at(t, content, `"ftp://x/"`) + `: route "r1" step 3 ("s"): url: ftp://x/ is not an absolute http(s) URL`,
	} {
		if !containsLine(strings.Split(err.Error(), "\n"), w) {
			t.Errorf("no line\n\t%s\nin\n%s", w, err)
		}
	}
}

func TestNew_places_a_routes_file_syntax_error(t *testing.T) {
	content := "{\"routes\": [\n  {\"name\": \"r1\",, \"steps\": []}\n]}"
	path, err := loadRoutesError(t, content)
	want := path + ":" + at(t, content, `, "steps"`) + `: not JSON: invalid character ',' looking for beginning of object key string`
	if !containsLine(strings.Split(err.Error(), "\n"), want) {
		t.Errorf("error\n%s\ndoes not hold\n\t%s", err, want)
	}
}

func TestNew_refuses_a_setting_reference_that_resembles_a_set_setting(t *testing.T) {
	content := `{"routes":[{"name":"erp-sync","steps":[
  {"name":"erp","type":"http","url":"${DVRELAY_ERP_ULR}"}
]}]}`
	path := writeRoutes(t, content)
	settings := map[string]string{"DVRELAY_ERP_URL": "http://127.0.0.1:1/erp"}
	_, err := worker.New(worker.Config{RoutesPath: path}, worker.Deps{
		Decoder:      newDecoder(t),
		Settings:     func(k string) (string, bool) { v, ok := settings[k]; return v, ok },
		SettingNames: func() []string { return []string{"PATH", "DVRELAY_ERP_URL", "DVRELAY_ERP_UR"} },
	}, slog.New(slog.DiscardHandler))

	var re *worker.RoutesError
	if !errors.As(err, &re) || len(re.Problems) != 1 {
		t.Fatalf("err = %v, want one routes problem", err)
	}
	p := re.Problems[0]
	if got, want := fmt.Sprintf("%d:%d", p.Line, p.Column), at(t, content, "${DVRELAY_ERP_ULR}"); got != want {
		t.Errorf("placed at %s, want %s (the reference)", got, want)
	}
	for _, want := range []string{"${DVRELAY_ERP_ULR} is not set", "DVRELAY_ERP_URL is", "write ${DVRELAY_ERP_URL}"} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("problem %q lacks %q", p.Text, want)
		}
	}
}

func TestNew_skips_a_step_whose_unset_setting_resembles_no_set_one(t *testing.T) {
	path := writeRoutes(t, `{"routes":[{"name":"crm","steps":[{"name":"crm","type":"http","url":"${DVRELAY_CRM_URL}"}]}]}`)
	settings := map[string]string{"DVRELAY_ERP_URL": "http://127.0.0.1:1/erp"}
	_, err := worker.New(worker.Config{RoutesPath: path}, worker.Deps{
		Decoder:      newDecoder(t),
		Settings:     func(k string) (string, bool) { v, ok := settings[k]; return v, ok },
		SettingNames: func() []string { return []string{"DVRELAY_ERP_URL"} },
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v; an optional setting two edits from a set one is no typo", err)
	}
}

func TestNew_in_strict_mode_a_skipped_step_stops_start_up(t *testing.T) {
	path := writeRoutes(t, `{"routes":[{"name":"erp-sync","steps":[{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"},{"name":"note","type":"log"}]}]}`)
	deps := worker.Deps{Decoder: newDecoder(t), Settings: func(string) (string, bool) { return "", false }}

	if _, err := worker.New(worker.Config{RoutesPath: path}, deps, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("not strict: %v, want a start with the step skipped", err)
	}
	_, err := worker.New(worker.Config{RoutesPath: path, StrictRoutes: true}, deps, slog.New(slog.DiscardHandler))
	var se *worker.StrictRoutesError
	if !errors.As(err, &se) || len(se.Skipped) != 1 || !strings.Contains(err.Error(), `route "erp-sync" step 1 ("erp"): setting DVRELAY_ERP_URL is not set`) ||
		!strings.Contains(err.Error(), "DVRELAY_STRICT_ROUTES") {
		t.Fatalf("strict: err = %v, want the skipped step named with DVRELAY_STRICT_ROUTES", err)
	}
}
