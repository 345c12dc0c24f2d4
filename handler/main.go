// Command handler is dvrelay's one binary. Started by the Azure Functions host (which sets
// FUNCTIONS_CUSTOMHANDLER_PORT) it is a custom handler serving the DataverseWebhook and
// EventWorker functions. `handler serve` runs the same intake and worker standalone, on an
// embedded durable queue unless Service Bus is configured. `handler dlq …` inspects and
// resubmits dead-lettered events.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dvrelay/dvrelay/internal/config"
)

const usage = `usage:
  handler                      custom handler mode (the Functions host sets FUNCTIONS_CUSTOMHANDLER_PORT)
  handler serve [flags]        run the intake and the worker standalone
  handler post FILE...         post event files to a running intake (--url)
  handler explain FILE         what a saved body would meet (-H 'K: V' for headers); sends nothing
  handler dlq list [flags]     list dead-lettered events (--reason, --entity, --since, --json)
  handler dlq show SEQ|ID      one dead letter: body, properties, description, history
  handler dlq resubmit SEQ...  send dead-lettered events back to the main queue (or --all, --reason R)
  handler dlq purge SEQ... --yes  delete dead-lettered events (or --older-than D, --reason R)
  handler register [flags]     register the intake as a Dataverse webhook with its step (--dry-run first)
  handler unregister --name N  remove a webhook endpoint with its steps and images
  handler registrations [flags] list the Dataverse steps that post to an intake URL
  handler package [--out F]    build for linux/amd64 and write the deployment zip (default dvrelay.zip)
  handler recover --since D [flags] queue reconcile events for webhook posts Dataverse gave up on (--dry-run first)
  handler --version            which build this is

Settings come from the environment; see docs/settings.md. Run 'handler serve -h' for its flags.
`

func main() {
	tuneGC(config.Environment)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], config.Environment, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it with their own environment and writers.
// Every subcommand reads its settings through config.Load(lookup), once.
// It returns the exit code: 0 ok, 1 runtime failure, 2 bad usage or configuration.
func run(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runCustomHandler(ctx, lookup, stdout, stderr)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], lookup, stdout, stderr)
	case "post":
		return runPost(ctx, args[1:], lookup, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, args[1:], lookup, stdout, stderr)
	case "register":
		return runRegister(ctx, args[1:], lookup, stdout, stderr)
	case "unregister":
		return runUnregister(ctx, args[1:], lookup, stdout, stderr)
	case "registrations":
		return runRegistrations(ctx, args[1:], lookup, stdout, stderr)
	case "package":
		return runPackage(ctx, args[1:], lookup, stdout, stderr)
	case "recover":
		return runRecover(ctx, args[1:], lookup, stdout, stderr)
	case "explain":
		return runExplain(ctx, args[1:], lookup, stdout, stderr)
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "handler: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// loadConfig reads the settings for the command named by prefix; a bad setting is reported on
// stderr, each naming its variable.
func loadConfig(lookup config.Lookup, prefix string, stderr io.Writer) (config.Config, bool) {
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration:\n%v\n", prefix, err)
		return cfg, false
	}
	return cfg, true
}
