package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/explain"
	"github.com/dvrelay/dvrelay/internal/ops/pack"
)

// runPackage writes the deployment zip: `handler package [--out dvrelay.zip]`. It builds from
// source, so it runs from a checkout (go run ./handler package), as azd's prepackage hook does.
func runPackage(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dvrelay.zip", "the zip to write")
	// The app reads DVRELAY_ROUTES (routes.json when unset); the file goes in under that name.
	entry := "routes.json"
	if v, ok := lookup("DVRELAY_ROUTES"); ok && v != "" {
		entry = v
	}
	routes := fs.String("routes", "", "the routes file to ship, relative to the repository root; it goes in under the name the app reads, $DVRELAY_ROUTES or routes.json, which is also the default")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "handler package: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "handler package: %v\n", err)
		return 1
	}
	if *routes == "" {
		*routes = entry
	}
	layout, err := pack.Package(ctx, pack.Options{
		Dir:         wd,
		MainPackage: "./handler",
		RoutesFile:  *routes,
		RoutesEntry: entry,
		CheckRoutes: func(path string) error { return checkRoutes(path, lookup, stderr) },
		Out:         *out,
		Env:         os.Environ(),
		Progress:    stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "handler package: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, the handler at %s\n", *out, len(layout.Entries()), layout.Executable)
	return 0
}

// checkRoutes loads the routes file as the worker does at start, with nothing able to send:
// the same schema, meaning and misspelt-setting checks, against this environment's settings.
// A step that would be skipped is a warning on stderr, since the app's settings may differ.
func checkRoutes(path string, lookup func(string) (string, bool), stderr io.Writer) error {
	parser, err := event.NewParser()
	if err != nil {
		return fmt.Errorf("compile event schemas: %w", err)
	}
	dataverseURL, _ := lookup("DATAVERSE_URL")
	deps := explain.Offline(lookup, parser, dataverseURL != "")
	deps.SettingNames = config.EnvironmentNames
	warn := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, err = worker.New(worker.Config{RoutesPath: path}, deps, warn)
	return err
}
