package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/explain"
)

const explainUsageLine = "usage: handler explain FILE [-H 'Name: value']...  (handler explain -h for more)\n"

const explainUsage = `usage: handler explain FILE [-H 'Name: value']...

A dry run of the intake and the worker on a saved webhook body: the intake's checks or the
answer it would refuse the body with, the canonical event and its EventId, the routes that
match and the steps that would run, with their URLs, or why they would be skipped. It reads
the same settings as serve and sends nothing anywhere.

Exit status: 0 the intake would accept the event, 1 it would refuse it, 2 usage or settings.

  -H 'Name: value'   a request header, as Dataverse would send it (repeatable), e.g.
                     -H 'Content-Type: application/json' -H 'x-dvrelay-secret: …'
                     -H 'x-ms-dynamics-msg-size-exceeded: true'
`

// runExplain is `handler explain`: it wires the settings into internal/explain.
func runExplain(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("explain", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	header := http.Header{}
	flags.Var(headerFlag(header), "H", "")
	var files []string
	// Flags may come after FILE, as in the usage line: parse again after each argument.
	for rest := args; ; {
		if err := flags.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, explainUsage)
				return 0
			}
			fmt.Fprintf(stderr, "handler explain: %v\n%s", err, explainUsageLine)
			return 2
		}
		if flags.NArg() == 0 {
			break
		}
		files = append(files, flags.Arg(0))
		rest = flags.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "handler explain: name one saved webhook body (got %d), e.g. samples/opportunity-update.json\n%s", len(files), explainUsageLine)
		return 2
	}
	body, err := os.ReadFile(files[0])
	if err != nil {
		fmt.Fprintf(stderr, "handler explain: %v\n", err)
		return 2
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler explain: configuration:\n%v\n", err)
		return 2
	}
	parser, err := event.NewParser()
	if err != nil {
		fmt.Fprintf(stderr, "handler explain: compile event schemas: %v\n", err)
		return 2
	}
	deps := explain.Offline(cfg.RouteVariable, parser, cfg.DataverseURL != "")
	deps.SettingNames = config.EnvironmentNames // a misspelt ${SETTING} fails here as at start
	w, err := worker.New(worker.Config{
		RoutesPath:    cfg.RoutesPath,
		MaxAttempts:   cfg.MaxAttempts,
		IgnoreUserIDs: cfg.IgnoreUserIDs,
	}, deps, discardLogger())
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "handler explain: %v (run from the app root, where routes.json is, or set DVRELAY_ROUTES)\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "handler explain: %v\n", err)
		return 2
	}
	rep, err := explain.Run(ctx, intakeConfig(cfg), parser, w, explain.Request{Body: body, Header: header})
	if err != nil {
		fmt.Fprintf(stderr, "handler explain: %v\n", err)
		return 1
	}
	if err := rep.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "handler explain: %v\n", err)
		return 1
	}
	if !rep.Accepted() {
		return 1
	}
	return 0
}

// intakeConfig is the intake's part of the settings: serve, the custom handler and explain all
// build their intake from it, so explain answers as the running intake would.
func intakeConfig(cfg config.Config) webhook.Config {
	secrets := make([][]byte, 0, len(cfg.WebhookSecrets))
	for _, s := range cfg.WebhookSecrets {
		secrets = append(secrets, []byte(s))
	}
	return webhook.Config{
		MaxBodyBytes:     cfg.MaxBodyBytes,
		Secrets:          secrets,
		SecretHeader:     cfg.SecretHeader,
		PublishTimeout:   cfg.PublishTimeout,
		UseSessions:      cfg.UseSessions,
		MaxInFlight:      cfg.MaxInFlight,
		MaxBytesInFlight: cfg.MaxBytesInFlight,
		AcceptStages:     cfg.AcceptStages,
	}
}

// headerFlag collects -H 'Name: value' into a header set.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("%q is not a header: write it as 'Name: value'", v)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}
