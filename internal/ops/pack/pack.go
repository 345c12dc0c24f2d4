// Package pack builds the deployment package of a Functions custom handler app: the zip that zip
// deploy and azd upload. It holds host.json, every <Function>/function.json, the routes file and
// the handler binary, cross-compiled for the Linux workers and stored executable at the path
// host.json names. Nothing else from the source tree goes in, so the package cannot carry a
// local.settings.json, test data or the embedded queue's data directory by accident.
package pack

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Layout is what goes into the package, as slash-separated paths relative to the app root.
type Layout struct {
	// Root is the app root on disk: the directory holding host.json.
	Root string
	// Files are copied as they are: host.json, the routes file and each <Function>/function.json.
	Files []string
	// Functions are the function folder names (a folder is a function when it holds function.json).
	Functions []string
	// Executable is host.json's customHandler.description.defaultExecutablePath: where the
	// binary goes, and the one entry stored with the execute bits.
	Executable string
	// Routes is the routes file's entry: the name the app reads it under. RoutesSource is the
	// file on disk, relative to Root; the two differ when a file is shipped under another name.
	Routes       string
	RoutesSource string
	// Sessions is written into every serviceBusTrigger binding as "isSessionsEnabled": a
	// trigger listens on a session-enabled queue only with it, and on another only without it.
	Sessions bool
}

// ReadLayout reads host.json and finds the function folders under root. routesFile is the
// routes file the worker reads (DVRELAY_ROUTES, routes.json by default), relative to root.
func ReadLayout(root, routesFile string) (Layout, error) {
	exe, err := executablePath(filepath.Join(root, "host.json"))
	if err != nil {
		return Layout{}, err
	}
	routes, err := relativeEntry(routesFile)
	if err != nil {
		return Layout{}, fmt.Errorf("routes file %q: %w", routesFile, err)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(routes))); err != nil {
		return Layout{}, fmt.Errorf("routes file: %w", err)
	}
	functions, err := functionFolders(root)
	if err != nil {
		return Layout{}, err
	}
	files := []string{"host.json", routes}
	for _, fn := range functions {
		files = append(files, fn+"/function.json")
	}
	slices.Sort(files)
	files = slices.Compact(files)
	if slices.Contains(files, exe) {
		return Layout{}, fmt.Errorf("host.json: defaultExecutablePath %q would overwrite a packaged file", exe)
	}
	return Layout{Root: root, Files: files, Functions: functions, Executable: exe, Routes: routes, RoutesSource: routes}, nil
}

// ShipRoutesAs puts the routes file into the package under entry, whatever it is called on
// disk: the app reads DVRELAY_ROUTES (routes.json by default), not the name a file had while
// it was being edited.
func (l Layout) ShipRoutesAs(entry string) (Layout, error) {
	name, err := relativeEntry(entry)
	if err != nil {
		return Layout{}, fmt.Errorf("routes entry %q: %w", entry, err)
	}
	if name == l.Routes {
		return l, nil
	}
	files := slices.DeleteFunc(slices.Clone(l.Files), func(f string) bool { return f == l.Routes })
	if slices.Contains(files, name) || name == l.Executable {
		return Layout{}, fmt.Errorf("routes entry %q would overwrite a packaged file", name)
	}
	files = append(files, name)
	slices.Sort(files)
	l.Files, l.Routes = files, name
	return l, nil
}

// source is the file on disk an entry is copied from, relative to Root.
func (l Layout) source(entry string) string {
	if entry == l.Routes && l.RoutesSource != "" {
		return l.RoutesSource
	}
	return entry
}

// Entries lists every path the package holds, the executable included, sorted.
func (l Layout) Entries() []string {
	entries := append(slices.Clone(l.Files), l.Executable)
	slices.Sort(entries)
	return entries
}

// executablePath reads the one host.json field the packager needs. The host resolves a relative
// path against the app root, so only a clean relative path inside the package makes sense.
func executablePath(hostJSON string) (string, error) {
	raw, err := os.ReadFile(hostJSON)
	if err != nil {
		return "", fmt.Errorf("read host.json: %w", err)
	}
	var host struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(raw, &host); err != nil {
		return "", fmt.Errorf("parse %s: %w", hostJSON, err)
	}
	p := host.CustomHandler.Description.DefaultExecutablePath
	if p == "" {
		return "", fmt.Errorf("%s: customHandler.description.defaultExecutablePath is not set", hostJSON)
	}
	rel, err := relativeEntry(p)
	if err != nil {
		return "", fmt.Errorf("%s: defaultExecutablePath %q: %w", hostJSON, p, err)
	}
	return rel, nil
}

// relativeEntry turns a path from configuration into a zip entry name, refusing anything that
// would land outside the app root.
func relativeEntry(p string) (string, error) {
	p = filepath.ToSlash(p)
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return "", errors.New("must be relative to the app root")
	}
	clean := path.Clean(p)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errors.New("must name a file inside the app root")
	}
	return clean, nil
}

// functionFolders returns the top-level folders of root that hold a function.json, as the
// host discovers them. Hidden folders (.git, .dvrelay, .azure) are never functions.
func functionFolders(root string) ([]string, error) {
	dirents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read app root: %w", err)
	}
	var functions []string
	for _, d := range dirents {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		_, err := os.Stat(filepath.Join(root, d.Name(), "function.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("function folder %s: %w", d.Name(), err)
		}
		functions = append(functions, d.Name())
	}
	if len(functions) == 0 {
		return nil, fmt.Errorf("no <Function>/function.json under %s", root)
	}
	return functions, nil
}

// WriteZip writes the package to w: the layout's files from disk and binary (a path on disk) at
// the executable path. The binary is stored with mode 0755 in the entry's Unix external
// attributes, so it stays executable however the zip is unpacked on Linux; the files get 0644.
func WriteZip(w io.Writer, l Layout, binary string) error {
	zw := zip.NewWriter(w)
	for _, name := range l.Files {
		var edit func([]byte) ([]byte, error)
		if path.Base(name) == "function.json" {
			edit = func(b []byte) ([]byte, error) { return withSessions(b, l.Sessions) }
		}
		if err := addFile(zw, name, filepath.Join(l.Root, filepath.FromSlash(l.source(name))), 0o644, edit); err != nil {
			return err
		}
	}
	if err := addFile(zw, l.Executable, binary, 0o755, nil); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish zip: %w", err)
	}
	return nil
}

// addFile adds src as name; edit, when not nil, rewrites its content on the way.
func addFile(zw *zip.Writer, name, src string, mode fs.FileMode, edit func([]byte) ([]byte, error)) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("package %s: %w", name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("package %s: %w", name, err)
	}
	var content io.Reader = f
	if edit != nil {
		raw, err := io.ReadAll(f)
		if err != nil {
			return fmt.Errorf("package %s: %w", name, err)
		}
		if raw, err = edit(raw); err != nil {
			return fmt.Errorf("package %s: %w", name, err)
		}
		content = bytes.NewReader(raw)
	}
	hdr := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: info.ModTime()}
	// SetMode marks the entry as made on Unix and puts the mode in the high 16 bits of the
	// external attributes, which is where unzip and the Linux deployment services read it.
	hdr.SetMode(mode)
	dst, err := zw.CreateHeader(hdr)
	if err != nil {
		return fmt.Errorf("package %s: %w", name, err)
	}
	if _, err := io.Copy(dst, content); err != nil {
		return fmt.Errorf("package %s: %w", name, err)
	}
	return nil
}

// WriteZipFile writes the package to the file out, replacing it only once the new one is
// complete, so a failed run never leaves a half-written zip where a deployment would pick it up.
func WriteZipFile(out string, l Layout, binary string) error {
	if dir := filepath.Dir(out); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".pack-*.zip")
	if err != nil {
		return fmt.Errorf("create package file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := WriteZip(tmp, l, binary); err != nil {
		tmp.Close()
		return err
	}
	// CreateTemp makes the file private; a package is an ordinary build artifact.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// withSessions sets "isSessionsEnabled" on every serviceBusTrigger binding of a function.json
// and leaves the other bindings and fields as they are; a file that already agrees goes in
// byte for byte.
func withSessions(functionJSON []byte, sessions bool) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(functionJSON, &doc); err != nil {
		return nil, fmt.Errorf("parse function.json: %w", err)
	}
	bindings, _ := doc["bindings"].([]any)
	changed := false
	for _, b := range bindings {
		if binding, ok := b.(map[string]any); ok && binding["type"] == "serviceBusTrigger" && binding["isSessionsEnabled"] != sessions {
			binding["isSessionsEnabled"] = sessions
			changed = true
		}
	}
	if !changed {
		return functionJSON, nil
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write function.json: %w", err)
	}
	return append(out, '\n'), nil
}
