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
func runPackage(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dvrelay.zip", "the zip to write")
	// Only the routes file's name matters here. The other settings are the deployed app's, which
	// checks them when it starts; a value in the packager's environment must not stop the build,
	// so their errors are left to that check.
	cfg, _ := config.Load(lookup)
	routes := fs.String("routes", cfg.RoutesFile, "the routes file to ship, relative to the repository root (default $DVRELAY_ROUTES, else "+config.DefaultRoutesFile+")")
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
	layout, err := pack.Package(ctx, pack.Options{
		Dir:         wd,
		MainPackage: "./handler",
		RoutesFile:  *routes,
		Out:         *out,
		Env:         config.InheritedEnvironment(),
		Progress:    stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "handler package: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, the handler at %s\n", *out, len(layout.Entries()), layout.Executable)
	return 0
}
