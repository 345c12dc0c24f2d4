package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/ops/recovery"
	"github.com/dvrelay/dvrelay/internal/ops/registration"
	"github.com/dvrelay/dvrelay/internal/queue"
)

func runRecover(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	return recoverCommand(ctx, args, lookup, stdout, stderr, machineDeps(), progressTerminal(stderr))
}

// stepIDs collects --step, which may be given once per step.
type stepIDs []string

func (s *stepIDs) String() string { return strings.Join(*s, ",") }

func (s *stepIDs) Set(v string) error {
	id, err := uuid.Parse(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%q is not a step id (a GUID; 'handler registrations --function-url …' lists them)", v)
	}
	*s = append(*s, id.String())
	return nil
}

// recoverCommand is `handler recover`: queue a reconcile event for every webhook post Dataverse
// gave up on. progress draws a progress line on stderr (a terminal).
func recoverCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, deps operatorDeps, progress bool) int {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	of := addOperatorFlags(fs)
	since := fs.String("since", "", "look at system jobs created since: a date (2026-11-01), a time (2026-11-01T08:00:00Z) or a span back (48h, 7d) (required)")
	var steps stepIDs
	fs.Var(&steps, "step", "id of a step whose failed system jobs to recover; repeat for more")
	functionURL := fs.String("function-url", "", "recover the jobs of every step that posts to this intake URL (its ?code= is ignored)")
	dryRun := fs.Bool("dry-run", false, "re-read and list what would be published, and publish nothing")
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	switch {
	case strings.TrimSpace(*since) == "":
		fmt.Fprintln(stderr, "handler recover: --since is required, e.g. --since 2026-11-01 or --since 48h")
		return 2
	case len(steps) == 0 && strings.TrimSpace(*functionURL) == "":
		fmt.Fprintln(stderr, "handler recover: say whose jobs to recover: --function-url https://<app>.azurewebsites.net/api/dataverse/webhook, or --step <id> for each step")
		return 2
	case len(steps) > 0 && strings.TrimSpace(*functionURL) != "":
		fmt.Fprintln(stderr, "handler recover: give --step or --function-url, not both")
		return 2
	}
	from, err := recovery.ParseSince(*since, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "handler recover: %v\n", err)
		return 2
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler recover: configuration:\n%v\n", err)
		return 2
	}

	// The queue first: a run that cannot publish should stop before it reads anything.
	var pub queue.Publisher
	if !*dryRun {
		b, code := openRecoverQueue(ctx, cfg, stderr)
		if b == nil {
			return code
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
			defer cancel()
			if err := b.close(ctx); err != nil {
				fmt.Fprintf(stderr, "handler recover: close the queue: %v\n", err)
			}
		}()
		pub = b.publisher
	}

	client, err := deps.webAPI(cfg, of, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler recover: %v\n", err)
		return 2
	}
	retry := deps.retry("recover", stderr)
	rec, err := recovery.New(client, pub, recovery.Options{Retry: retry, UseSessions: cfg.UseSessions})
	if err != nil {
		fmt.Fprintf(stderr, "handler recover: %v\n", err)
		return 1
	}

	var found []recovery.Step
	if len(steps) > 0 {
		found, err = rec.StepsByID(ctx, steps)
	} else {
		var regs []registration.Registration
		regs, err = registration.New(client, registration.Options{Sleep: retry.Sleep, OnWait: retry.OnWait}).List(ctx, strings.TrimSpace(*functionURL))
		found = recovery.StepsFromRegistrations(regs)
		var se *registration.SpecError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "handler recover: %v\n", err)
			return 2
		}
		if err == nil && len(found) == 0 {
			fmt.Fprintf(stderr, "handler recover: no webhook step posts to %s; 'handler registrations --function-url …' lists the steps of an intake URL\n", registration.RedactURL(*functionURL))
			return 2
		}
	}
	if err != nil {
		fmt.Fprint(stderr, webAPIFailure("recover", err))
		return 1
	}
	for _, s := range found {
		if s.Missing {
			fmt.Fprintf(stdout, "%s: no such step (any more); looking for its jobs anyway\n", s)
		} else {
			fmt.Fprintln(stdout, s)
		}
	}

	jobs, err := rec.FindJobs(ctx, found, from)
	if err != nil {
		fmt.Fprint(stderr, webAPIFailure("recover", err))
		return 1
	}
	if len(jobs) == 0 {
		fmt.Fprintf(stdout, "no failed or waiting system jobs since %s: nothing to recover\n", from.Format(time.RFC3339))
		return 0
	}
	const clearLine = "\r\033[K"
	sum := rec.Run(ctx, jobs, *dryRun, func(done int, res recovery.Result) {
		if progress {
			fmt.Fprint(stderr, clearLine)
		}
		fmt.Fprintln(stdout, res)
		if progress && done < len(jobs) {
			fmt.Fprintf(stderr, "handler recover: %d/%d system jobs", done, len(jobs))
		}
	})
	if progress && sum.NotTried > 0 {
		fmt.Fprint(stderr, clearLine) // the run stopped with a count drawn
	}
	fmt.Fprintln(stdout, sum)
	if !sum.OK() {
		fmt.Fprintln(stderr, "handler recover: some jobs were not recovered; fix what their lines say and run the same command again (it publishes the same EventIds, and the queue drops those it already holds)")
		return 1
	}
	return 0
}

// openRecoverQueue opens the configured queue backend to publish to. On failure it has said
// why on stderr and returns the exit code.
func openRecoverQueue(ctx context.Context, cfg config.Config, stderr io.Writer) (*backend, int) {
	if cfg.Backend() == config.BackendEmbedded {
		// Events queued into a new, empty data dir would never reach the serve that should
		// process them: refuse rather than create one.
		if _, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
			where, _ := filepath.Abs(cfg.DataDir)
			fmt.Fprintf(stderr, "handler recover: no embedded queue at %s (DVRELAY_DATA_DIR): run recover where handler serve keeps its data, or set DVRELAY_DATA_DIR to its data dir; nothing was published\n", where)
			return nil, 2
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := openBackend(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "handler recover: %v\n", err)
		if errors.Is(err, queue.ErrDirInUse) {
			fmt.Fprintln(stderr, "  a running handler serve owns this queue: stop it, run recover, then start it again to process what recover queued (--dry-run works while it runs)")
		}
		return nil, 1
	}
	return b, 0
}

// progressTerminal reports whether w is a terminal, where a progress line can be redrawn.
func progressTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
