package pack

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

// stubPackage stands in for the handler: Build compiles it with the settings the handler
// ships with (linux/amd64, CGO off, -trimpath). The handler itself would cost a second compile
// of every dependency in that configuration, minutes on a small machine, to prove what the stub
// proves in seconds; TestHandler_dependencies_need_no_cgo covers what only the handler can show.
const stubPackage = "./internal/ops/pack/testdata/stub"

// built is the package the real build produced, shared by the tests that read it, once per
// test binary.
var built struct {
	zip      string
	layout   Layout
	progress string
	err      error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if !testing.Short() {
			dir, err := os.MkdirTemp("", "pack-test-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			var progress bytes.Buffer
			built.zip = filepath.Join(dir, "out", "dvrelay.zip")
			built.layout, built.err = Package(context.Background(), Options{
				Dir:         ".",
				MainPackage: stubPackage,
				RoutesFile:  "routes.json",
				Out:         built.zip,
				Env:         os.Environ(),
				Progress:    &progress,
				Sessions:    config.DefaultUseSessions, // as the repository's function.json says
			})
			built.progress = progress.String()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// openBuilt opens the zip the real build wrote and indexes its entries by name.
func openBuilt(t *testing.T) map[string]*zip.File {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program for linux/amd64; skipped with -short")
	}
	if built.err != nil {
		t.Fatalf("Package: %v\n%s", built.err, built.progress)
	}
	zr, err := zip.OpenReader(built.zip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zr.Close() })
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
	}
	return entries
}

func readEntry(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// hostExecutable reads defaultExecutablePath from the repository's host.json, the way the
// Functions host does, independently of the code under test.
func hostExecutable(t *testing.T, root string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	var host struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(raw, &host); err != nil {
		t.Fatal(err)
	}
	return host.CustomHandler.Description.DefaultExecutablePath
}

func TestPackage_zip_holds_host_json_every_function_json_routes_and_the_binary_where_host_json_says(t *testing.T) {
	entries := openBuilt(t)
	root := repoRoot(t)

	want := []string{"host.json", "routes.json", hostExecutable(t, root)}
	functionJSONs, err := filepath.Glob(filepath.Join(root, "*", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(functionJSONs) < 2 {
		t.Fatalf("found %d function.json files in the repository, want the intake and the worker", len(functionJSONs))
	}
	for _, p := range functionJSONs {
		rel, _ := filepath.Rel(root, p)
		want = append(want, filepath.ToSlash(rel))
	}
	slices.Sort(want)
	var got []string
	for name := range entries {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("zip entries = %q, want exactly %q", got, want)
	}

	// The configuration files go in byte for byte.
	for _, name := range want {
		if name == hostExecutable(t, root) {
			continue
		}
		src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readEntry(t, entries[name]), src) {
			t.Errorf("%s in the zip differs from the repository's", name)
		}
	}
	if !strings.Contains(built.progress, "building "+stubPackage+" for linux/amd64") {
		t.Errorf("progress on stderr = %q, want a line saying what is being built", built.progress)
	}
}

func TestPackage_binary_is_a_static_linux_amd64_executable(t *testing.T) {
	entries := openBuilt(t)
	bin := readEntry(t, entries[hostExecutable(t, repoRoot(t))])

	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		t.Fatalf("binary starts with %q, want the ELF magic \\x7fELF", bin[:min(4, len(bin))])
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		t.Errorf("binary is %v %v, want ELFCLASS64 EM_X86_64", f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("binary type %v, want ET_EXEC", f.Type)
	}
	// CGO_ENABLED=0: no dynamic loader, so the binary runs on any Linux worker image.
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary asks for a dynamic loader (PT_INTERP): it was built with cgo")
		}
	}
}

func TestPackage_binary_keeps_its_execute_bits_in_the_zip(t *testing.T) {
	entries := openBuilt(t)
	exe := hostExecutable(t, repoRoot(t))
	for name, f := range entries {
		want := fs.FileMode(0o644)
		if name == exe {
			want = 0o755
		}
		// The Unix mode lives in the high 16 bits of the external attributes, and only counts
		// when the entry says it was made on Unix (creator 3); unzip and the Linux deployment
		// services read it from there.
		if creator := f.CreatorVersion >> 8; creator != 3 {
			t.Errorf("%s: creator system %d, want 3 (Unix) so the mode bits are honoured", name, creator)
		}
		unixMode := f.ExternalAttrs >> 16
		if got := fs.FileMode(unixMode & 0o777); got != want {
			t.Errorf("%s: mode %v in the external attributes, want %v", name, got, want)
		}
		if unixMode&0o170000 != 0o100000 {
			t.Errorf("%s: external attributes %#o do not mark a regular file", name, unixMode)
		}
		if got := f.Mode(); got != want {
			t.Errorf("%s: archive/zip reads mode %v, want %v", name, got, want)
		}
	}
}

// The shipped binary is built with CGO off. A dependency with cgo files would then either fail
// to build or quietly fall back to a stub that fails at run time, and only `handler package`
// would tell. go list answers without compiling anything.
func TestHandler_dependencies_need_no_cgo(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	cmd := exec.Command(goTool, "list", "-deps",
		"-f", "{{if not .Standard}}{{if .CgoFiles}}{{.ImportPath}}{{end}}{{end}}", "./handler")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if cgo := strings.Fields(string(out)); len(cgo) > 0 {
		t.Errorf("the handler depends on packages with cgo files %q; it ships built with CGO_ENABLED=0", cgo)
	}
}

// writeApp lays out a minimal app root for the layout tests.
func writeApp(t *testing.T, hostJSON string, functions ...string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"host.json": hostJSON, "routes.json": `{"routes":[]}`}
	for _, fn := range functions {
		files[fn+"/function.json"] = `{"bindings":[]}`
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const hostJSONWithExecutable = `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"bin/handler"}}}`

func TestReadLayout_takes_the_folders_holding_function_json_and_skips_hidden_ones(t *testing.T) {
	root := writeApp(t, hostJSONWithExecutable, "Intake", "Worker", ".hidden")
	if err := os.MkdirAll(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLayout(root, "routes.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Intake", "Worker"}; !slices.Equal(l.Functions, want) {
		t.Errorf("functions = %q, want %q", l.Functions, want)
	}
	want := []string{"Intake/function.json", "Worker/function.json", "bin/handler", "host.json", "routes.json"}
	if got := l.Entries(); !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestReadLayout_refuses_an_executable_path_outside_the_app_root(t *testing.T) {
	for _, p := range []string{"../handler", "/usr/bin/handler", ""} {
		t.Run(p, func(t *testing.T) {
			root := writeApp(t, `{"customHandler":{"description":{"defaultExecutablePath":"`+p+`"}}}`, "Intake")
			_, err := ReadLayout(root, "routes.json")
			if err == nil || !strings.Contains(err.Error(), "defaultExecutablePath") {
				t.Fatalf("err = %v, want one naming defaultExecutablePath", err)
			}
		})
	}
}

func TestReadLayout_fails_without_any_function(t *testing.T) {
	root := writeApp(t, hostJSONWithExecutable)
	if _, err := ReadLayout(root, "routes.json"); err == nil || !strings.Contains(err.Error(), "function.json") {
		t.Fatalf("err = %v, want one saying no function.json was found", err)
	}
}

func TestReadLayout_ships_the_routes_file_the_worker_is_told_to_read(t *testing.T) {
	root := writeApp(t, hostJSONWithExecutable, "Intake")
	if err := os.WriteFile(filepath.Join(root, "routes.prod.json"), []byte(`{"routes":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLayout(root, "routes.prod.json")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(l.Files, "routes.prod.json") || slices.Contains(l.Files, "routes.json") {
		t.Errorf("files = %q, want routes.prod.json and not routes.json", l.Files)
	}
	if _, err := ReadLayout(root, "missing.json"); err == nil {
		t.Error("a routes file that does not exist was accepted")
	}
}

func TestWriteZipFile_leaves_no_zip_behind_when_packaging_fails(t *testing.T) {
	root := writeApp(t, hostJSONWithExecutable, "Intake")
	l, err := ReadLayout(root, "routes.json")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dvrelay.zip")
	if err := WriteZipFile(out, l, filepath.Join(root, "no-such-binary")); err == nil {
		t.Fatal("packaging a missing binary succeeded")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("stat %s after a failed run: %v, want not exist", out, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*"))
	if len(leftovers) != 0 {
		t.Errorf("files left behind: %q", leftovers)
	}
}

func TestModuleRoot_walks_up_to_go_mod(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := ModuleRoot(deep)
	if err != nil {
		t.Fatal(err)
	}
	if got != root {
		t.Errorf("ModuleRoot(%s) = %s, want %s", deep, got, root)
	}
}

func TestWriteZip_ships_a_routes_file_under_the_name_the_app_reads(t *testing.T) {
	root := writeApp(t, hostJSONWithExecutable, "Intake")
	typo := `{"routes":[{"name":"from-the-typo-file","steps":[{"name":"s","type":"log"}]}]}`
	if err := os.WriteFile(filepath.Join(root, "routes-typo.json"), []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(t.TempDir(), "handler")
	if err := os.WriteFile(binary, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLayout(root, "routes-typo.json")
	if err != nil {
		t.Fatal(err)
	}
	if l, err = l.ShipRoutesAs("routes.json"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dvrelay.zip")
	if err := WriteZipFile(out, l, binary); err != nil {
		t.Fatal(err)
	}

	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
	}
	if _, has := entries["routes-typo.json"]; has {
		t.Error("the zip holds routes-typo.json, which the app never reads")
	}
	f, ok := entries["routes.json"]
	if !ok || string(readEntry(t, f)) != typo {
		t.Errorf("routes.json in the zip is not the routes-typo.json given (entries %v)", slices.Sorted(maps.Keys(entries)))
	}
}

func TestPackage_refuses_a_routes_file_the_start_up_checks_reject_and_builds_nothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dvrelay.zip")
	var progress bytes.Buffer
	refusal := fmt.Errorf("routes.json: 3 problems: ...")
	var checked string
	_, err := Package(context.Background(), Options{
		Dir: ".", MainPackage: "./handler", RoutesFile: "routes.json", Out: out, Env: os.Environ(), Progress: &progress,
		CheckRoutes: func(path string) error { checked = path; return refusal },
	})
	if !errors.Is(err, refusal) || !strings.Contains(err.Error(), "not packaged") {
		t.Fatalf("err = %v, want the check's error, saying nothing was packaged", err)
	}
	if checked != filepath.Join(repoRoot(t), "routes.json") {
		t.Errorf("checked %q, want the routes file at the repository root", checked)
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("a zip was written: %v", statErr)
	}
	if strings.Contains(progress.String(), "building") {
		t.Errorf("built the handler for a refused routes file:\n%s", progress.String())
	}
}

func TestWriteZip_writes_the_session_setting_into_the_service_bus_trigger(t *testing.T) {
	for _, sessions := range []bool{true, false} {
		t.Run(fmt.Sprint("sessions=", sessions), func(t *testing.T) {
			root := writeApp(t, hostJSONWithExecutable, "Worker")
			fn := filepath.Join(root, "Worker", "function.json")
			worker := `{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"msg","queueName":"%ServiceBusQueueName%","connection":"ServiceBusConnection","isSessionsEnabled":` + fmt.Sprint(!sessions) + `}]}`
			if err := os.WriteFile(fn, []byte(worker), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := ReadLayout(root, "routes.json")
			if err != nil {
				t.Fatal(err)
			}
			l.Sessions = sessions
			binary := filepath.Join(t.TempDir(), "handler")
			if err := os.WriteFile(binary, []byte("binary"), 0o755); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteZip(&buf, l, binary); err != nil {
				t.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Bindings []map[string]any }
			for _, f := range zr.File {
				if f.Name == "Worker/function.json" {
					if err := json.Unmarshal(readEntry(t, f), &got); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(got.Bindings) != 1 || got.Bindings[0]["isSessionsEnabled"] != sessions || got.Bindings[0]["queueName"] != "%ServiceBusQueueName%" {
				t.Errorf("packaged bindings %v, want isSessionsEnabled %v and the rest kept", got.Bindings, sessions)
			}
		})
	}
}
