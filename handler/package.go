package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/ops/pack"
)

// runPackage writes the deployment zip: `handler package [--out dvrelay.zip]`. It builds from
// source, so it runs from a checkout (go run ./handler package), as azd's prepackage hook does.
func runPackage(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dvrelay.zip", "the zip to write")
	defaultRoutes := "routes.json"
	if v, ok := lookup("DVRELAY_ROUTES"); ok && v != "" {
		defaultRoutes = v
	}
	routes := fs.String("routes", defaultRoutes, "the routes file to ship, relative to the repository root (default $DVRELAY_ROUTES, else routes.json)")
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
	layout, err := pack.Package(ctx, pack.Options{
		Dir:         wd,
		MainPackage: "./handler",
		RoutesFile:  *routes,
		Out:         *out,
		Env:         os.Environ(),
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

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
