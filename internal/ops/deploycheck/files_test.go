package deploycheck

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/ops/pack"
)

// This file reads the deployment files the way the tools that consume them do, just enough to
// compare names. Each reader fails the test naming the file when the file is not as expected.

type repo struct {
	root string
}

func openRepo(t *testing.T) repo {
	t.Helper()
	root, err := pack.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return repo{root: root}
}

func (r repo) read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return b
}

func (r repo) readJSON(t *testing.T, rel string, v any) {
	t.Helper()
	if err := json.Unmarshal(r.read(t, rel), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// hostJSON is the part of host.json the checks compare.
type hostJSON struct {
	FunctionTimeout string `json:"functionTimeout"`
	Extensions      struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
		ServiceBus struct {
			AutoCompleteMessages       *bool  `json:"autoCompleteMessages"`
			MaxAutoLockRenewalDuration string `json:"maxAutoLockRenewalDuration"`
			ClientRetryOptions         struct {
				Mode  string `json:"mode"`
				Delay string `json:"delay"`
			} `json:"clientRetryOptions"`
		} `json:"serviceBus"`
	} `json:"extensions"`
}

func (r repo) host(t *testing.T) hostJSON {
	t.Helper()
	var h hostJSON
	r.readJSON(t, "host.json", &h)
	return h
}

// routePrefix is host.json's extensions.http.routePrefix; the host's default is "api".
func (h hostJSON) routePrefix() string {
	if h.Extensions.HTTP.RoutePrefix == nil {
		return "api"
	}
	return *h.Extensions.HTTP.RoutePrefix
}

type binding struct {
	Type       string `json:"type"`
	Direction  string `json:"direction"`
	Name       string `json:"name"`
	Route      string `json:"route"`
	QueueName  string `json:"queueName"`
	Connection string `json:"connection"`
}

type function struct {
	name     string // the folder name, which is the function name
	file     string // <name>/function.json
	bindings []binding
}

// trigger is the function's one input binding whose type ends in "Trigger".
func (f function) trigger(t *testing.T) binding {
	t.Helper()
	for _, b := range f.bindings {
		if b.Direction == "in" && strings.HasSuffix(b.Type, "Trigger") {
			return b
		}
	}
	t.Fatalf("%s: no trigger binding", f.file)
	return binding{}
}

// functions reads every <Function>/function.json the host would load, found as the packager
// finds them.
func (r repo) functions(t *testing.T) []function {
	t.Helper()
	layout, err := pack.ReadLayout(r.root, "routes.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []function
	for _, name := range layout.Functions {
		f := function{name: name, file: name + "/function.json"}
		var doc struct {
			Bindings []binding `json:"bindings"`
		}
		r.readJSON(t, f.file, &doc)
		f.bindings = doc.Bindings
		out = append(out, f)
	}
	return out
}

// functionWithTrigger returns the one function triggered by triggerType.
func (r repo) functionWithTrigger(t *testing.T, triggerType string) function {
	t.Helper()
	var found []function
	for _, f := range r.functions(t) {
		if f.trigger(t).Type == triggerType {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one function with a %s, found %d", triggerType, len(found))
	}
	return found[0]
}

// localSettings is local.settings.json's Values, as func start hands them to the host.
func (r repo) localSettings(t *testing.T) map[string]string {
	t.Helper()
	var doc struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	r.readJSON(t, "local.settings.json", &doc)
	return doc.Values
}

// parametersJSON is infra/main.parameters.json: parameter name to its value (azd substitutes
// ${NAME} references from the azd environment).
func (r repo) parametersJSON(t *testing.T) map[string]string {
	t.Helper()
	var doc struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	r.readJSON(t, "infra/main.parameters.json", &doc)
	out := map[string]string{}
	for name, p := range doc.Parameters {
		s, ok := p.Value.(string)
		if !ok {
			t.Fatalf("infra/main.parameters.json: %s: value %v is not a string", name, p.Value)
		}
		out[name] = s
	}
	return out
}

// bicep is what the checks need from infra/main.bicep. Bicep cannot be compiled on the machines
// these tests run on, so it is read as text, relying on the file's layout: one declaration per
// line for parameters and outputs, and the app settings in `var appSettings = [ ... ]`, each
// entry as a `name:` line followed by a `value:` line.
type bicep struct {
	file     string
	text     string
	params   map[string]bicepParam
	settings map[string]string // app setting name -> its value expression
	outputs  map[string]string // output name -> its expression
}

type bicepParam struct {
	typ string
	def string // the default expression, '' unquoted for string literals; empty when none
}

var (
	bicepParamLine   = regexp.MustCompile(`(?m)^param (\w+) (\w+)(?: = (.*))?$`)
	bicepOutputLine  = regexp.MustCompile(`(?m)^output (\w+) \w+ = (.*)$`)
	bicepSettingPair = regexp.MustCompile(`name: '([^']+)'\s*\n\s*value: (.*)`)
	identifier       = regexp.MustCompile(`\b[A-Za-z_]\w*\b`)
)

func (r repo) bicep(t *testing.T) bicep {
	t.Helper()
	b := bicep{file: "infra/main.bicep", params: map[string]bicepParam{}, settings: map[string]string{}, outputs: map[string]string{}}
	b.text = string(r.read(t, b.file))
	for _, m := range bicepParamLine.FindAllStringSubmatch(b.text, -1) {
		b.params[m[1]] = bicepParam{typ: m[2], def: unquoteBicep(strings.TrimSpace(m[3]))}
	}
	for _, m := range bicepOutputLine.FindAllStringSubmatch(b.text, -1) {
		b.outputs[m[1]] = strings.TrimSpace(m[2])
	}
	list := b.block(t, "var appSettings = [", "\n]\n")
	for _, m := range bicepSettingPair.FindAllStringSubmatch(list, -1) {
		if _, dup := b.settings[m[1]]; dup {
			t.Errorf("%s: app setting %s is listed twice", b.file, m[1])
		}
		b.settings[m[1]] = strings.TrimSpace(m[2])
	}
	if len(b.settings) == 0 {
		t.Fatalf("%s: no app settings found in `var appSettings = [ ... ]`", b.file)
	}
	return b
}

// block returns the text from the line starting with start to the first end after it.
func (b bicep) block(t *testing.T, start, end string) string {
	t.Helper()
	i := strings.Index(b.text, "\n"+start)
	if i < 0 {
		t.Fatalf("%s: %q not found", b.file, start)
	}
	rest := b.text[i+1:]
	j := strings.Index(rest, end)
	if j < 0 {
		t.Fatalf("%s: no end to the block starting %q", b.file, start)
	}
	return rest[:j]
}

// resource returns the body of `resource <name> '...' = {` up to its closing brace at column 0.
func (b bicep) resource(t *testing.T, name string) string {
	t.Helper()
	return b.block(t, "resource "+name+" ", "\n}\n")
}

// property returns the value of `key: value` in a block, unquoted.
func property(t *testing.T, file, block, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `: (.*)$`).FindStringSubmatch(block)
	if m == nil {
		t.Fatalf("%s: %s not set", file, key)
	}
	return unquoteBicep(strings.TrimSpace(strings.SplitN(m[1], "//", 2)[0]))
}

// paramsIn lists the declared parameters an expression refers to.
func (b bicep) paramsIn(expr string) []string {
	var out []string
	for _, id := range identifier.FindAllString(expr, -1) {
		if _, ok := b.params[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

func unquoteBicep(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], `\'`, `'`)
	}
	return s
}

// settingsDocPath is the operator's list of settings: one table, every setting the handler reads.
const settingsDocPath = "docs/settings.md"

// settingRow is one row of the settings table.
type settingRow struct {
	names []string // the backticked names in the first column
	def   string   // the default column, backticks removed
}

var backticked = regexp.MustCompile("`([^`]+)`")

// settingsTable reads the table rows of docs/settings.md, keyed by every setting each row names.
func (r repo) settingsTable(t *testing.T) map[string]settingRow {
	t.Helper()
	text := string(r.read(t, settingsDocPath))
	rows := map[string]settingRow{}
	for _, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		row := settingRow{def: strings.Trim(strings.TrimSpace(cells[2]), "`")}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			row.names = append(row.names, m[1])
		}
		for _, n := range row.names {
			rows[n] = row
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no table rows with backticked setting names", settingsDocPath)
	}
	return rows
}

// goSources returns the non-test Go files of the module (this package's own tests excluded),
// keyed by their path relative to the root.
func (r repo) goSources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && p != r.root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
