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
func runPackage(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dvrelay.zip", "the zip to write")
	// Only the routes file's name matters here. The other settings are the deployed app's, which
	// checks them when it starts; a value in the packager's environment must not stop the build,
	// so their errors are left to that check.
	cfg, _ := config.Load(lookup)
	entry := cfg.RoutesFile // the name the app reads; the file goes in under it
	routes := fs.String("routes", "", "the routes file to ship, relative to the repository root; it goes in under the name the app reads, $DVRELAY_ROUTES or "+config.DefaultRoutesFile+", which is also the default")
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
	// The same setting, read the same way, as the handler and infra/main.bicep: the trigger must
	// listen the way the queue was created.
	sessions, err := config.UseSessions(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler package: %v\n", err)
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
		CheckRoutes: func(path string) error { return checkRoutes(path, cfg, stderr) },
		Out:         *out,
		Env:         config.InheritedEnvironment(),
		Progress:    stderr,
		Sessions:    sessions,
	})
	if err != nil {
		fmt.Fprintf(stderr, "handler package: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, the handler at %s, Service Bus sessions %s (DVRELAY_USE_SESSIONS)\n",
		*out, len(layout.Entries()), layout.Executable, onOff(sessions))
	return 0
}

// checkRoutes loads the routes file as the worker does at start, with nothing able to send:
// the same schema, meaning and misspelt-setting checks, against this environment's settings.
// A step that would be skipped is a warning on stderr, since the app's settings may differ.
func checkRoutes(path string, cfg config.Config, stderr io.Writer) error {
	parser, err := event.NewParser()
	if err != nil {
		return fmt.Errorf("compile event schemas: %w", err)
	}
	deps := explain.Offline(cfg.RouteVariable, parser, cfg.DataverseURL != "")
	deps.SettingNames = config.EnvironmentNames
	warn := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, err = worker.New(worker.Config{RoutesPath: path}, deps, warn)
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
