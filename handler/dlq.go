package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dvrelay/dvrelay/internal/admin"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// dlqCommand is one `handler dlq` invocation, parsed.
type dlqCommand struct {
	verb    string // list, resubmit or purge
	limit   int
	asJSON  bool
	dataDir string
	addr    string
	seqs    []int64 // resubmit and purge: the sequence numbers to act on
}

// runDLQ is the support engineer's tool: list, resubmit and purge dead-lettered events. It opens
// the configured backend directly; when the embedded queue belongs to a running `handler serve`
// it asks that process over HTTP instead (--addr).
func runDLQ(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	cmd, code, ok := parseDLQ(args, stderr)
	if !ok {
		return code
	}
	cfg, ok := loadConfig(lookup, "handler dlq", stderr)
	if !ok {
		return 2
	}
	if cmd.dataDir != "" {
		cfg.DataDir = cmd.dataDir
	}
	dl, closeDL, err := openDeadLetters(ctx, cfg, cmd.addr, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler dlq: %v\n", err)
		return 1
	}
	defer closeDL()
	if cmd.verb == "list" {
		return listDeadLetters(ctx, dl, cmd, stdout, stderr)
	}
	return resubmitOrPurge(ctx, dl, cmd, stdout, stderr)
}

// parseDLQ reads the verb, its flags and its operands. When ok is false the command is over,
// with exit code code (0 after -h).
func parseDLQ(args []string, stderr io.Writer) (cmd dlqCommand, code int, ok bool) {
	if len(args) == 0 {
		fmt.Fprint(stderr, "handler dlq: say list, resubmit SEQ... or purge SEQ...\n")
		return cmd, 2, false
	}
	cmd.verb = args[0]
	fs := flag.NewFlagSet("dlq "+cmd.verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cmd.limit, "limit", 50, "list at most this many")
	fs.BoolVar(&cmd.asJSON, "json", false, "print JSON instead of a table")
	fs.StringVar(&cmd.dataDir, "data-dir", "", "embedded queue directory (default $DVRELAY_DATA_DIR, else ./.dvrelay)")
	fs.StringVar(&cmd.addr, "addr", "127.0.0.1:7071", "address of a running 'handler serve', used when it owns the data dir")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cmd, 0, false
		}
		return cmd, 2, false
	}
	seqs, err := dlqOperands(cmd.verb, fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cmd, 2, false
	}
	cmd.seqs = seqs
	return cmd, 0, true
}

// dlqOperands checks the operands verb takes: none for list, sequence numbers otherwise.
func dlqOperands(verb string, args []string) ([]int64, error) {
	switch verb {
	case "list":
		if len(args) > 0 {
			return nil, fmt.Errorf("handler dlq list: unexpected argument %q", args[0])
		}
		return nil, nil
	case "resubmit", "purge":
		if len(args) == 0 {
			return nil, fmt.Errorf("handler dlq %s: give one or more sequence numbers (see 'handler dlq list')", verb)
		}
		seqs := make([]int64, 0, len(args))
		for _, a := range args {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("handler dlq %s: %q is not a sequence number", verb, a)
			}
			seqs = append(seqs, n)
		}
		return seqs, nil
	default:
		return nil, fmt.Errorf("handler dlq: unknown command %q (list, resubmit, purge)", verb)
	}
}

func listDeadLetters(ctx context.Context, dl deadLetters, cmd dlqCommand, stdout, stderr io.Writer) int {
	items, err := dl.ListDeadLetters(ctx, cmd.limit)
	if err != nil {
		fmt.Fprintf(stderr, "handler dlq list: %v\n", err)
		return 1
	}
	if cmd.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(items)
		return 0
	}
	printDeadLetters(stdout, items)
	return 0
}

// resubmitOrPurge acts on every sequence number, going on past failures; one failure makes the
// exit code 1.
func resubmitOrPurge(ctx context.Context, dl deadLetters, cmd dlqCommand, stdout, stderr io.Writer) int {
	code := 0
	for _, seq := range cmd.seqs {
		var msg string
		var err error
		if cmd.verb == "resubmit" {
			var id string
			id, err = dl.Resubmit(ctx, seq)
			msg = fmt.Sprintf("resubmitted %d as message %s", seq, id)
		} else {
			err = dl.Purge(ctx, seq)
			msg = fmt.Sprintf("purged %d", seq)
		}
		if err != nil {
			fmt.Fprintf(stderr, "handler dlq %s %d: %v\n", cmd.verb, seq, err)
			code = 1
			continue
		}
		fmt.Fprintln(stdout, msg)
	}
	return code
}

// deadLetters is what the dlq command does, on the backend itself or through handler serve.
type deadLetters interface {
	ListDeadLetters(ctx context.Context, limit int) ([]admin.DeadLetter, error)
	Resubmit(ctx context.Context, seq int64) (string, error)
	Purge(ctx context.Context, seq int64) error
}

// openDeadLetters opens the configured backend, or, when a running handler serve owns the
// embedded queue's directory, a client of that process's admin routes.
func openDeadLetters(ctx context.Context, cfg config.Config, addr string, stderr io.Writer) (deadLetters, func(), error) {
	b, err := openBackend(ctx, cfg, discardLogger())
	if errors.Is(err, queue.ErrDirInUse) {
		fmt.Fprintf(stderr, "handler dlq: %s is in use by a running handler serve; asking it at http://%s\n", cfg.DataDir, addr)
		secret := ""
		if len(cfg.WebhookSecrets) > 0 {
			secret = cfg.WebhookSecrets[0]
		}
		return remoteDeadLetters{admin.NewClient(addr, cfg.SecretHeader, secret)}, func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return backendDeadLetters{b}, func() { _ = b.close(context.WithoutCancel(ctx)) }, nil
}

// backendDeadLetters works on the backend directly.
type backendDeadLetters struct{ b *backend }

func (d backendDeadLetters) ListDeadLetters(ctx context.Context, limit int) ([]admin.DeadLetter, error) {
	items, err := d.b.deadLetters.ListDeadLetters(ctx, limit)
	views := make([]admin.DeadLetter, 0, len(items))
	for _, item := range items {
		views = append(views, admin.View(item))
	}
	return views, err
}

func (d backendDeadLetters) Resubmit(ctx context.Context, seq int64) (string, error) {
	return d.b.deadLetters.Resubmit(ctx, seq)
}

func (d backendDeadLetters) Purge(ctx context.Context, seq int64) error {
	if d.b.purge == nil {
		return fmt.Errorf("purge is not supported on the %s backend; complete the message with your Service Bus tooling", d.b.name)
	}
	return d.b.purge(ctx, seq)
}

// remoteDeadLetters asks the handler serve that owns the embedded queue; it offers no purge.
type remoteDeadLetters struct{ *admin.Client }

func (remoteDeadLetters) Purge(context.Context, int64) error {
	return errors.New("purge needs the data dir: stop handler serve first")
}

func printDeadLetters(w io.Writer, items []admin.DeadLetter) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no dead-lettered events")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tSUBJECT\tMESSAGE ID\tREASON\tDESCRIPTION")
	for _, d := range items {
		desc := d.Description
		if len(desc) > 80 {
			desc = desc[:77] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.SequenceNumber, d.DeadLetteredAt.Format(time.RFC3339),
			d.Subject, d.MessageID, d.Reason, desc)
	}
	_ = tw.Flush()
}
