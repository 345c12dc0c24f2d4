package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/config"
)

// workbook is the part of infra/workbook.json (an Azure Monitor workbook) the checks read.
type workbook struct {
	Version string `json:"version"`
	Items   []struct {
		Type    int    `json:"type"`
		Name    string `json:"name"`
		Content struct {
			Query      string `json:"query"`
			Title      string `json:"title"`
			Parameters []struct {
				Name  string `json:"name"`
				Value any    `json:"value"`
			} `json:"parameters"`
			Metrics []struct {
				Metric string `json:"metric"`
			} `json:"metrics"`
			Filters []struct {
				Key        string `json:"key"`
				ValueParam string `json:"valueParam"`
			} `json:"filters"`
		} `json:"content"`
	} `json:"items"`
}

// Workbook item types used here.
const (
	workbookQuery      = 3
	workbookParameters = 9
	workbookMetric     = 10
)

// workbookParams are the lines of a .kql file that the workbook fills from its parameters;
// everything else must be the same text in both.
var workbookParams = map[string]string{
	`let wantedEventId = "";`:       `let wantedEventId = "{EventId}";`,
	`let wantedCorrelationId = "";`: `let wantedCorrelationId = "{CorrelationId}";`,
	`let wantedInvocationId = "";`:  `let wantedInvocationId = "{InvocationId}";`,
}

func (r repo) queries(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(r.root, "infra", "queries", "*.kql"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("infra/queries/*.kql: %v (%d files)", err, len(paths))
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".kql")] = string(b)
	}
	return out
}

func TestThe_workbook_runs_the_shipped_queries_with_its_declared_parameters(t *testing.T) {
	r := openRepo(t)
	var wb workbook
	r.readJSON(t, "infra/workbook.json", &wb)
	if wb.Version != "Notebook/1.0" {
		t.Fatalf("infra/workbook.json: version %q, want Notebook/1.0", wb.Version)
	}
	params := map[string]any{}
	byName := map[string]int{}
	for i, it := range wb.Items {
		byName[it.Name] = i
		if it.Type == workbookParameters {
			for _, p := range it.Content.Parameters {
				params[p.Name] = p.Value
			}
		}
	}
	for name, kql := range r.queries(t) {
		i, ok := byName[name]
		if !ok || wb.Items[i].Type != workbookQuery {
			t.Errorf("infra/workbook.json: no query item named %q for infra/queries/%s.kql", name, name)
			continue
		}
		want := kql
		for from, to := range workbookParams {
			want = strings.ReplaceAll(want, from, to)
		}
		if got := wb.Items[i].Content.Query; got != want {
			t.Errorf("infra/workbook.json: item %q differs from infra/queries/%s.kql (copy the file into the item's query, filling the parameter lines)", name, name)
		}
	}
	used := regexp.MustCompile(`\{([A-Za-z]+)\}`)
	for _, it := range wb.Items {
		text := it.Content.Query + it.Content.Title
		for _, f := range it.Content.Filters {
			text += "{" + f.ValueParam + "}"
		}
		for _, m := range used.FindAllStringSubmatch(text, -1) {
			if _, ok := params[m[1]]; !ok {
				t.Errorf("infra/workbook.json: item %q uses {%s}, which is not a parameter", it.Name, m[1])
			}
		}
	}

	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if params["DeadLetterQueue"] != cfg.DeadLetterQueueName {
		t.Errorf("infra/workbook.json: DeadLetterQueue defaults to %v, the handler's and infra's dead-letter queue is %q",
			params["DeadLetterQueue"], cfg.DeadLetterQueueName)
	}
	i, ok := byName["deadletter-depth"]
	if !ok || wb.Items[i].Type != workbookMetric || len(wb.Items[i].Content.Metrics) != 1 ||
		wb.Items[i].Content.Metrics[0].Metric != "microsoft.servicebus/namespaces--ActiveMessages" ||
		len(wb.Items[i].Content.Filters) != 1 || wb.Items[i].Content.Filters[0].Key != "EntityName" ||
		wb.Items[i].Content.Filters[0].ValueParam != "DeadLetterQueue" {
		t.Errorf("infra/workbook.json: deadletter-depth must chart ActiveMessages of the EntityName {DeadLetterQueue}")
	}
}

func TestThe_queries_read_only_fields_the_handler_logs(t *testing.T) {
	r := openRepo(t)
	var source strings.Builder
	for _, dir := range []string{"functions", "internal", "handler"} {
		err := filepath.WalkDir(filepath.Join(r.root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			source.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	code := source.String()
	slogKeys := []string{"time", "level", "msg"} // written by log/slog's JSON handler itself
	field := regexp.MustCompile(`\bline\.([A-Za-z]+)`)
	for name, kql := range r.queries(t) {
		for _, m := range field.FindAllStringSubmatch(kql, -1) {
			if !slices.Contains(slogKeys, m[1]) && !strings.Contains(code, `"`+m[1]+`"`) {
				t.Errorf("infra/queries/%s.kql reads %s, which no log line of the handler has", name, m[1])
			}
		}
	}
}

func TestFailures_query_counts_the_refusals_the_intake_logs_as_a_count(t *testing.T) {
	// Past its budget the intake logs one line per outcome and second with the count of the
	// refusals it did not log one by one; a query that missed that line would show an overload
	// as ten refusals a second.
	kql := openRepo(t).queries(t)["failures-last-hour"]
	if !strings.Contains(kql, `"`+webhook.MsgRefusalsNotLogged+`"`) || !strings.Contains(kql, "line.notLogged") {
		t.Errorf("infra/queries/failures-last-hour.kql does not add in the intake's %q lines by notLogged", webhook.MsgRefusalsNotLogged)
	}
}
