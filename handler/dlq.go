package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/platform/lookback"
	"github.com/dvrelay/dvrelay/internal/platform/suggest"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/support"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

const dlqUsage = `usage:
  handler dlq list [--reason R] [--entity E] [--since D] [--limit N] [--json]
  handler dlq show (SEQ | EventId) [--json]
  handler dlq resubmit (SEQ... | --all | --reason R | --entity E) [--since D] [--dry-run]
  handler dlq purge (SEQ... | --older-than D | --reason R) --yes
  handler dlq history (RecordId | EventId | CorrelationId | Dataverse record URL) [--json]

D is a duration back from now (90m, 36h, 7d) or a time (2025-11-25, 2025-11-25T07:04:05Z).
Every command also takes --data-dir DIR (the embedded queue; default $DVRELAY_DATA_DIR, else
./.dvrelay) and --addr HOST:PORT (the handler serve that owns that directory; by default the
address it recorded there). Flags may come before or after the operands.
Exit codes: 0 all done, 1 something failed, 2 usage.
`

// dlqCommand is one `handler dlq` invocation, parsed.
type dlqCommand struct {
	verb    string // list, show, resubmit, purge or history
	dataDir string
	addr    string
	asJSON  bool

	// selection
	operands  []string // show: one SEQ or EventId
	seqs      []int64  // resubmit, purge
	all       bool
	reason    string
	entity    string
	since     time.Time
	olderThan time.Time
	limit     int

	dryRun bool
	yes    bool
}

// usageError is a command line the command cannot act on: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// runDLQ is the support engineer's tool: list, show, resubmit and purge dead-lettered events,
// the same on both backends. It opens the configured backend directly; when the embedded queue
// belongs to a running `handler serve` it asks that process over HTTP instead.
func runDLQ(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	cmd, err := parseDLQ(args, time.Now(), stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return dlqFail(stderr, cmd.verb, err)
	}
	cfg, ok := loadConfig(lookup, "handler dlq", stderr)
	if !ok {
		return 2
	}
	if cmd.dataDir != "" {
		cfg.DataDir = cmd.dataDir
	}
	src, err := openDLQSource(ctx, cfg, cmd.addr, stderr)
	if err != nil {
		return dlqFail(stderr, cmd.verb, err)
	}
	defer src.close()
	out := &dlqRun{cmd: cmd, src: src, stdout: stdout, stderr: stderr, progress: isTerminal(stderr)}
	switch cmd.verb {
	case "list":
		err = out.list(ctx)
	case "show":
		err = out.show(ctx)
	case "resubmit":
		err = out.resubmit(ctx)
	case "purge":
		err = out.purge(ctx)
	case "history":
		err = out.history(ctx)
	}
	if err != nil {
		return dlqFail(stderr, cmd.verb, src.explain(err))
	}
	return 0
}

// errSomeFailed ends a command that reported each failure already: exit 1, nothing more to say.
var errSomeFailed = errors.New("some failed")

// dlqFail reports err and returns its exit code.
func dlqFail(stderr io.Writer, verb string, err error) int {
	var usage *usageError
	switch {
	case errors.Is(err, errSomeFailed):
		return 1
	case errors.As(err, &usage):
		prefix := "handler dlq"
		if verb != "" {
			prefix += " " + verb
		}
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return 2
	}
	fmt.Fprintf(stderr, "handler dlq %s: %v\n", verb, err)
	return 1
}

// parseDLQ reads the verb, its flags and its operands; flags may come anywhere after the verb.
// -h prints the usage and returns flag.ErrHelp.
func parseDLQ(args []string, now time.Time, stderr io.Writer) (dlqCommand, error) {
	var cmd dlqCommand
	// --data-dir and --addr may come before the verb too.
	global := flag.NewFlagSet("handler dlq", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&cmd.dataDir, "data-dir", "", "")
	global.StringVar(&cmd.addr, "addr", "", "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, dlqUsage)
			return cmd, err
		}
		return cmd, usagef("%v\n\n%s", err, dlqUsage)
	}
	args = global.Args()
	if len(args) == 0 {
		return cmd, usagef("say what to do\n\n%s", dlqUsage)
	}
	cmd.verb = args[0]
	switch cmd.verb {
	case "list", "show", "resubmit", "purge", "history":
	case "help":
		fmt.Fprint(stderr, dlqUsage)
		return cmd, flag.ErrHelp
	default:
		verb := cmd.verb
		cmd.verb = ""
		return cmd, usagef("unknown command %q\n\n%s", verb, dlqUsage)
	}
	fs := flag.NewFlagSet("handler dlq "+cmd.verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, below, with what to do
	fs.StringVar(&cmd.dataDir, "data-dir", cmd.dataDir, "embedded queue directory (default $DVRELAY_DATA_DIR, else ./"+config.DefaultDataDir+")")
	fs.StringVar(&cmd.addr, "addr", cmd.addr, "address of the handler serve that owns the data dir (default: the address it recorded there)")
	var since, olderThan string
	switch cmd.verb {
	case "list":
		fs.StringVar(&cmd.reason, "reason", "", "only this dead-letter reason, e.g. PermanentFailure")
		fs.StringVar(&cmd.entity, "entity", "", "only events of this table, e.g. opportunity")
		fs.StringVar(&since, "since", "", "only those dead-lettered since: 24h, 7d, or a time")
		fs.IntVar(&cmd.limit, "limit", 50, "list at most this many, oldest first")
		fs.BoolVar(&cmd.asJSON, "json", false, "one JSON object per line instead of a table")
	case "show":
		fs.BoolVar(&cmd.asJSON, "json", false, "one JSON object per line, body and history included")
	case "history":
		fs.BoolVar(&cmd.asJSON, "json", false, "one JSON object per event, its timeline included")
	case "resubmit":
		fs.BoolVar(&cmd.all, "all", false, "every dead letter")
		fs.StringVar(&cmd.reason, "reason", "", "every dead letter with this reason")
		fs.StringVar(&cmd.entity, "entity", "", "every dead letter of this table")
		fs.StringVar(&since, "since", "", "with --all, --reason or --entity: only those dead-lettered since")
		fs.BoolVar(&cmd.dryRun, "dry-run", false, "say what would be resubmitted, and send nothing")
	case "purge":
		fs.StringVar(&olderThan, "older-than", "", "every dead letter older than this: 7d, or a time")
		fs.StringVar(&cmd.reason, "reason", "", "every dead letter with this reason")
		fs.BoolVar(&cmd.yes, "yes", false, "really delete; without it, purge only says what it would delete")
	}
	if err := parseInterleaved(fs, args[1:], &cmd.operands); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, dlqUsage)
			return cmd, err
		}
		return cmd, usagef("%v\n\n%s", err, dlqUsage)
	}
	var err error
	if cmd.since, err = parseWhen("--since", since, now); err != nil {
		return cmd, err
	}
	if cmd.olderThan, err = parseWhen("--older-than", olderThan, now); err != nil {
		return cmd, err
	}
	return cmd, checkSelection(&cmd)
}

// parseInterleaved parses flags wherever they are among the operands, as `handler post` does;
// everything after "--" is an operand.
func parseInterleaved(fs *flag.FlagSet, args []string, operands *[]string) error {
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			*operands = append(*operands, rest...)
			return nil
		}
		*operands = append(*operands, rest[0])
		args = rest[1:]
	}
}

// checkSelection checks that the operands and the selecting flags name one selection the verb
// takes, and reads the sequence numbers.
func checkSelection(cmd *dlqCommand) error {
	switch cmd.verb {
	case "list":
		if len(cmd.operands) > 0 {
			return usagef("takes no operand (got %q); narrow the list with --reason, --entity or --since", cmd.operands[0])
		}
		if cmd.limit < 1 {
			return usagef("--limit must be 1 or more")
		}
	case "show":
		if len(cmd.operands) != 1 {
			return usagef("name one dead letter: its sequence number or its EventId (see 'handler dlq list')")
		}
	case "history":
		if len(cmd.operands) != 1 || support.SearchKey(cmd.operands[0]) == "" {
			return usagef("name one record or event: a RecordId, an EventId, a CorrelationId or a Dataverse record URL")
		}
	case "resubmit":
		filtered := cmd.reason != "" || cmd.entity != ""
		switch {
		case len(cmd.operands) > 0 && (cmd.all || filtered || !cmd.since.IsZero()):
			return usagef("give sequence numbers or --all/--reason/--entity, not both")
		case cmd.all && filtered:
			return usagef("--all means every dead letter; drop it to resubmit only those --reason or --entity select")
		case len(cmd.operands) == 0 && !cmd.all && !filtered:
			return usagef("say which: sequence numbers (see 'handler dlq list'), --all, --reason R or --entity E")
		}
	case "purge":
		filtered := cmd.reason != "" || !cmd.olderThan.IsZero()
		switch {
		case len(cmd.operands) > 0 && filtered:
			return usagef("give sequence numbers or --older-than/--reason, not both")
		case len(cmd.operands) == 0 && !filtered:
			return usagef("say which: sequence numbers (see 'handler dlq list'), --older-than D or --reason R")
		}
	}
	if cmd.reason != "" {
		reason, err := checkReason(cmd.reason)
		if err != nil {
			return err
		}
		cmd.reason = reason
	}
	if cmd.verb == "resubmit" || cmd.verb == "purge" {
		seen := map[int64]bool{}
		for _, a := range cmd.operands {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil || n < 1 {
				return usagef("%q is not a sequence number (the SEQ column of 'handler dlq list')", a)
			}
			if !seen[n] {
				seen[n] = true
				cmd.seqs = append(cmd.seqs, n)
			}
		}
	}
	return nil
}

// checkReason returns the reason code --reason names (in its exact spelling), or a usage error
// listing the reasons there are: a reason that matches nothing would list nothing silently.
func checkReason(given string) (string, error) {
	reasons := queue.Reasons()
	for _, r := range reasons {
		if strings.EqualFold(r, given) {
			return r, nil
		}
	}
	guess := ""
	for _, r := range reasons {
		if strings.Contains(strings.ToLower(r), strings.ToLower(given)) {
			guess = r // a prefix or part of one, as "Permanent"
			break
		}
	}
	if near, d := suggest.Nearest(given, reasons); guess == "" && d >= 0 && d <= max(2, len(given)/3) {
		guess = near
	}
	hint := ""
	if guess != "" {
		hint = " (did you mean " + guess + "?)"
	}
	return "", usagef("--reason %q is not a dead-letter reason%s; the reasons are %s", given, hint, strings.Join(reasons, ", "))
}

// parseWhen reads a --since or --older-than value in lookback's grammar. The zero time when s
// is empty.
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := lookback.Parse(s, now)
	if err != nil {
		return time.Time{}, usagef("%s %v", flagName, err)
	}
	return t, nil
}

// dlqRun is one command at work on its source.
type dlqRun struct {
	cmd            dlqCommand
	src            *dlqSource
	stdout, stderr io.Writer
	progress       bool // stderr is a terminal: show progress there
}

func (r *dlqRun) filter() queue.DeadLetterFilter {
	return queue.DeadLetterFilter{Reason: r.cmd.reason, Entity: r.cmd.entity, Since: r.cmd.since, Before: r.cmd.olderThan}
}

func (r *dlqRun) list(ctx context.Context) error {
	items, err := r.src.collect(ctx, r.filter(), r.cmd.limit)
	if err != nil {
		return err
	}
	if r.cmd.asJSON {
		return printJSONLines(r.stdout, items)
	}
	if len(items) == 0 {
		fmt.Fprintf(r.stdout, "no dead letters%s in %s\n", r.describeFilter(), r.src.where)
		if r.src.dir != "" {
			if hint := servesBelow(r.src.dir); hint != "" {
				fmt.Fprintln(r.stderr, strings.TrimPrefix(hint, "\n"))
			}
		}
		return nil
	}
	printTable(r.stdout, items)
	if len(items) == r.cmd.limit {
		fmt.Fprintf(r.stderr, "showing the first %d; raise --limit, or narrow with --reason, --entity or --since\n", r.cmd.limit)
	}
	return nil
}

func (r *dlqRun) describeFilter() string {
	var parts []string
	if r.cmd.reason != "" {
		parts = append(parts, "with reason "+r.cmd.reason)
	}
	if r.cmd.entity != "" {
		parts = append(parts, "of table "+r.cmd.entity)
	}
	if !r.cmd.since.IsZero() {
		parts = append(parts, "since "+r.cmd.since.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, ", ")
}

func (r *dlqRun) show(ctx context.Context) error {
	ref := r.cmd.operands[0]
	var seqs []int64
	if seq, err := strconv.ParseInt(ref, 10, 64); err == nil && seq > 0 {
		seqs = []int64{seq}
	} else {
		items, err := r.src.collect(ctx, queue.DeadLetterFilter{EventID: ref}, 0)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return fmt.Errorf("no dead letter of event %s in %s; 'handler dlq list' shows what is there", ref, r.src.where)
		}
		for _, d := range items {
			seqs = append(seqs, d.SequenceNumber)
		}
	}
	for i, seq := range seqs {
		d, err := r.src.DeadLetter(ctx, seq)
		if errors.Is(err, queue.ErrNotFound) {
			return fmt.Errorf("no dead letter has sequence number %d in %s; 'handler dlq list' shows what is there", seq, r.src.where)
		}
		if err != nil {
			return err
		}
		if r.cmd.asJSON {
			if err := printJSONLines(r.stdout, []admin.Detail{d}); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(r.stdout)
		}
		printDetail(r.stdout, d)
	}
	return nil
}

// selection is what the command line names for a resubmit or purge.
func (r *dlqRun) selection() support.Selection {
	return support.Selection{Seqs: r.cmd.seqs, Filter: r.filter()}
}

// lookUp fills in what named targets are, for a dry run or a purge's confirmation; those with
// nothing parked under them are reported and counted in missing.
func (r *dlqRun) lookUp(ctx context.Context, ts []support.Target) (found []support.Target, missing int, err error) {
	found, gone, err := support.LookUp(ctx, r.src, ts)
	if err != nil {
		return nil, 0, err
	}
	for _, seq := range gone {
		fmt.Fprintf(r.stderr, "handler dlq %s %d: no dead letter has this sequence number in %s\n", r.cmd.verb, seq, r.src.where)
	}
	return found, len(gone), nil
}

func (r *dlqRun) resubmit(ctx context.Context) error {
	ts, err := support.Targets(ctx, r.src, r.selection())
	if err != nil {
		return err
	}
	if r.cmd.dryRun {
		found, missing, err := r.lookUp(ctx, ts)
		if err != nil {
			return err
		}
		for _, t := range found {
			fmt.Fprintf(r.stdout, "would resubmit %s\n", oneLineSummary(*t.D))
			if err := r.warnIfNewer(ctx, t.Seq, t.D); err != nil {
				return err
			}
		}
		fmt.Fprintf(r.stdout, "dry run: would resubmit %d, not found %d; nothing was sent\n", len(found), missing)
		if missing > 0 {
			return errSomeFailed
		}
		return nil
	}
	read := map[int64]*support.DeadLetter{}
	for _, t := range ts {
		read[t.Seq] = t.D
	}
	resubmit := support.ResubmitAct(r.src.Source)
	return r.each(ctx, ts, "resubmitted", func(ctx context.Context, seq int64) (string, error) {
		if err := r.warnIfNewer(ctx, seq, read[seq]); err != nil && !errors.Is(err, queue.ErrNotFound) {
			return "", err
		}
		return resubmit(ctx, seq)
	}, func(res support.Result) string {
		return fmt.Sprintf("resubmitted %d as message %s", res.Seq, res.MessageID)
	})
}

// warnIfNewer tells support, before dead letter seq is resubmitted, that a newer event of its
// record has completed since (where the backend keeps that history): the resubmitted event joins
// the tail of its record and would apply older data over newer.
func (r *dlqRun) warnIfNewer(ctx context.Context, seq int64, d *support.DeadLetter) error {
	c, err := support.NewerCompleted(ctx, r.src.Source, seq)
	if err != nil || c == nil {
		return err
	}
	if d == nil {
		detail, err := r.src.DeadLetter(ctx, seq)
		if err != nil {
			return err
		}
		d = &detail.DeadLetter
	}
	fmt.Fprintln(r.stderr, support.NewerWarning(*d, c))
	return nil
}

// purgePreviewLines bounds the list of what a purge without --yes would remove.
const purgePreviewLines = 20

func (r *dlqRun) purge(ctx context.Context) error {
	ts, err := support.Targets(ctx, r.src, r.selection())
	if err != nil {
		return err
	}
	if !r.cmd.yes {
		found, missing, err := r.lookUp(ctx, ts)
		if err != nil {
			return err
		}
		if len(found) == 0 {
			fmt.Fprintf(r.stdout, "nothing to purge: no dead letter matches in %s\n", r.src.where)
			if missing > 0 {
				return errSomeFailed
			}
			return nil
		}
		fmt.Fprintf(r.stdout, "would remove %s from %s:\n", deadLetters(len(found)), r.src.where)
		for i, t := range found {
			if i == purgePreviewLines {
				fmt.Fprintf(r.stdout, "  … and %d more\n", len(found)-i)
				break
			}
			fmt.Fprintf(r.stdout, "  %s\n", oneLineSummary(*t.D))
		}
		return usagef("nothing removed: a purge cannot be undone. Add --yes to remove %s "+
			"(or resubmit instead: 'handler dlq resubmit')", deadLetters(len(found)))
	}
	return r.each(ctx, ts, "purged", support.PurgeAct(r.src), func(res support.Result) string {
		return fmt.Sprintf("purged %d", res.Seq)
	})
}

// each acts on every target through support.Apply and prints each result, then the summary
// line. When the source itself stops answering, the rest are not tried and count as failed.
func (r *dlqRun) each(ctx context.Context, ts []support.Target, done string, act support.Act, said func(support.Result) string) error {
	tried := 0
	withProgress := func(ctx context.Context, seq int64) (string, error) {
		tried++
		if r.progress {
			fmt.Fprintf(r.stderr, "\r%s %d/%d…", r.cmd.verb, tried, len(ts))
			defer fmt.Fprint(r.stderr, "\r\033[K")
		}
		return act(ctx, seq)
	}
	stopped := false
	sum := support.Apply(ctx, ts, withProgress, func(i int, res support.Result) bool {
		switch {
		case res.Skipped:
			fmt.Fprintf(r.stderr, "handler dlq %s %d: no longer dead-lettered (resubmitted or purged meanwhile); skipped\n", r.cmd.verb, res.Seq)
		case res.Err == nil:
			fmt.Fprintln(r.stdout, said(res))
		case errors.Is(res.Err, queue.ErrNotFound):
			fmt.Fprintf(r.stderr, "handler dlq %s %d: no dead letter has this sequence number in %s; 'handler dlq list' shows what is there\n",
				r.cmd.verb, res.Seq, r.src.where)
		default:
			fmt.Fprintf(r.stderr, "handler dlq %s %d: %v\n", r.cmd.verb, res.Seq, r.src.explain(res.Err))
			if r.src.unreachable(res.Err) || ctx.Err() != nil {
				stopped = true
				if rest := len(ts) - i - 1; rest > 0 {
					fmt.Fprintf(r.stderr, "handler dlq %s: stopped; %d more not tried\n", r.cmd.verb, rest)
				}
				return false
			}
		}
		return true
	})
	fmt.Fprintf(r.stdout, "%s %d, skipped %d, failed %d\n", done, sum.Done, sum.Skipped, sum.Failed)
	if sum.Failed > 0 || stopped {
		return errSomeFailed
	}
	return nil
}

// history prints what happened to a record or an event: each event, oldest first, with its
// timeline.
func (r *dlqRun) history(ctx context.Context) error {
	rec, err := r.src.records.Record(ctx, r.cmd.operands[0])
	if err != nil {
		return err
	}
	if r.cmd.asJSON {
		return printJSONLines(r.stdout, rec.Events)
	}
	if rec.DeadLettersOnly {
		fmt.Fprintf(r.stderr, "%s keeps no history: only its dead letters were searched. Application Insights has the rest: %s\n",
			r.src.where, support.HistoryQuery)
	}
	if len(rec.Events) == 0 {
		fmt.Fprintf(r.stdout, "nothing known of %s in %s (the history keeps 7 days)\n", rec.Key, r.src.where)
		return nil
	}
	printStories(r.stdout, rec)
	return nil
}

func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return strconv.Itoa(n) + " dead letters"
}
