package config_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

// envReaders are the standard library's ways to read the environment, by import path.
var envReaders = map[string][]string{
	"os":      {"Getenv", "LookupEnv", "Environ", "ExpandEnv"},
	"syscall": {"Getenv", "Environ"},
}

// TestOnly_internal_config_reads_the_environment holds the rule that every setting is read in
// this package: no other package's production code calls os.Getenv, os.LookupEnv, os.Environ
// (or their syscall twins), and none asks a lookup for a setting by name, as in
// lookup("DVRELAY_ROUTES"). The files are parsed, so a comment or a test that names them does
// not count.
func TestOnly_internal_config_reads_the_environment(t *testing.T) {
	root := moduleRoot(t)
	self := filepath.Join(root, "internal", "config")
	names := append(config.SettingNames(), "GOGC", "GOMEMLIMIT")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path == self || base == "testdata" || base == "vendor" || (path != root && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if strings.HasSuffix(f.Name.Name, "test") {
			return nil // a test helper package (queuetest, browsertest): only tests import it
		}
		checked++
		rel, _ := filepath.Rel(root, path)
		for _, problem := range environmentReads(fset, f, names) {
			t.Errorf("%s:%s; read it in internal/config (config.Load) and pass the value down", rel, problem)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s: the walk is not seeing the module", checked, root)
	}
}

// environmentReads lists, as "line: what", each call in f that reads the environment itself or
// asks for one of names by its literal name.
func environmentReads(fset *token.FileSet, f *ast.File, names []string) []string {
	imported := map[string]string{} // local name → import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		local := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			local = imp.Name.Name
		}
		imported[local] = path
	}
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		line := fset.Position(call.Pos()).Line
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
			if pkg, ok := sel.X.(*ast.Ident); ok && slices.Contains(envReaders[imported[pkg.Name]], sel.Sel.Name) {
				found = append(found, strconv.Itoa(line)+": calls "+imported[pkg.Name]+"."+sel.Sel.Name)
			}
		}
		for _, arg := range call.Args {
			lit, ok := arg.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				continue
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && slices.Contains(names, s) {
				found = append(found, strconv.Itoa(line)+": asks for the setting "+s+" by name")
			}
		}
		return true
	})
	return found
}

// moduleRoot is the directory holding go.mod, above this package's.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func TestEnvironment_reads_are_found_in_code_but_not_in_comments(t *testing.T) {
	src := `package p

import (
	"os"
	sys "syscall"
)

// os.Getenv("DVRELAY_ROUTES") in a comment is not a read.
func f(lookup func(string) (string, bool)) {
	_ = os.Getenv("HOME")
	_, _ = sys.Getenv("HOME")
	_, _ = lookup("DVRELAY_ROUTES")
	_ = "DVRELAY_ROUTES: not a call"
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := environmentReads(fset, f, []string{"DVRELAY_ROUTES"})
	want := []string{"10: calls os.Getenv", "11: calls syscall.Getenv", "12: asks for the setting DVRELAY_ROUTES by name"}
	if !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
}
