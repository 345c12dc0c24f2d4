package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// ModuleRoot walks up from dir to the directory holding go.mod: the app root, where host.json
// and the function folders live next to the Go module.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find go.mod: %w", err)
	}
	for d := dir; ; {
		_, err := os.Stat(filepath.Join(d, "go.mod"))
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find go.mod: %w", err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or any parent: run from inside the repository", dir)
		}
		d = parent
	}
}

// Build cross-compiles the main package pkg (e.g. "./handler") of the module at root for the
// Functions host's Linux workers, writing the binary to out. It runs `go build` as a child
// process with env (the caller's environment, which carries GOCACHE, GOPROXY, PATH and the
// like) plus the target settings, which win over anything env says. The go tool's own output
// goes to progress, so a compile error shows up where the user is looking.
func Build(ctx context.Context, root, pkg, out string, env []string, progress io.Writer) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go tool is needed to build the handler: %w", err)
	}
	// -trimpath keeps the build machine's paths out of the binary and makes builds repeatable.
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	// The Functions host runs custom handlers on Linux x86-64 on every Linux plan. CGO is off
	// so the binary needs no C library from the worker image (the embedded queue's SQLite is
	// pure Go). os/exec keeps the last value of a repeated variable, so these override env.
	cmd.Env = append(append([]string(nil), env...), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	cmd.Stdout = progress
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/amd64: %w", pkg, err)
	}
	return nil
}

// Options says what to package and where.
type Options struct {
	// Dir is where to start looking for go.mod, usually the working directory.
	Dir string
	// MainPackage is the handler's main package, relative to the module root ("./handler").
	MainPackage string
	// RoutesFile is the routes file to ship, relative to the app root ("routes.json").
	RoutesFile string
	// RoutesEntry is the name the app reads the routes file under (its DVRELAY_ROUTES,
	// routes.json by default); the file is shipped under it whatever RoutesFile is called.
	// Empty: RoutesFile.
	RoutesEntry string
	// CheckRoutes runs the worker's start-up checks on the routes file (a path on disk) before
	// anything is built, so a file the app would refuse is never shipped. nil: no check.
	CheckRoutes func(path string) error
	// Out is the zip to write.
	Out string
	// Env is the environment the go tool runs in (os.Environ()).
	Env []string
	// Progress receives a line per stage and the go tool's own output.
	Progress io.Writer
	// Sessions is DVRELAY_USE_SESSIONS: the packaged Service Bus triggers get
	// "isSessionsEnabled" from it, so they listen the way the queue was created.
	Sessions bool
}

// Package builds the handler for linux/amd64 and writes the deployment zip, returning what it
// holds. The binary is built into a temporary directory, never into the source tree, so a
// Linux build cannot replace the developer's own bin/handler.
func Package(ctx context.Context, o Options) (Layout, error) {
	root, err := ModuleRoot(o.Dir)
	if err != nil {
		return Layout{}, err
	}
	layout, err := ReadLayout(root, o.RoutesFile)
	if err != nil {
		return Layout{}, err
	}
	if o.CheckRoutes != nil {
		if err := o.CheckRoutes(filepath.Join(root, filepath.FromSlash(layout.RoutesSource))); err != nil {
			return Layout{}, fmt.Errorf("the app would refuse this routes file, so it is not packaged:\n%w", err)
		}
	}
	if o.RoutesEntry != "" {
		if layout, err = layout.ShipRoutesAs(o.RoutesEntry); err != nil {
			return Layout{}, err
		}
		if layout.Routes != layout.RoutesSource {
			fmt.Fprintf(o.Progress, "shipping %s as %s, the name the app reads\n", layout.RoutesSource, layout.Routes)
		}
	}
	layout.Sessions = o.Sessions
	tmp, err := os.MkdirTemp("", "dvrelay-pack-")
	if err != nil {
		return Layout{}, fmt.Errorf("build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	binary := filepath.Join(tmp, filepath.Base(layout.Executable))
	fmt.Fprintf(o.Progress, "building %s for linux/amd64 (CGO_ENABLED=0) ...\n", o.MainPackage)
	if err := Build(ctx, root, o.MainPackage, binary, o.Env, o.Progress); err != nil {
		return Layout{}, err
	}
	fmt.Fprintf(o.Progress, "writing %s\n", o.Out)
	if err := WriteZipFile(o.Out, layout, binary); err != nil {
		return Layout{}, err
	}
	return layout, nil
}
