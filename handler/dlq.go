package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

// runDLQ is the support engineer's tool: list, resubmit and purge dead-lettered events. It opens
// the configured backend directly; when the embedded queue belongs to a running `handler serve`
// it asks that process over HTTP instead (--addr).
func runDLQ(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "handler dlq: say list, resubmit SEQ... or purge SEQ...\n")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("dlq "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	limit := fs.Int("limit", 50, "list at most this many")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	dataDir := fs.String("data-dir", "", "embedded queue directory (default $DVRELAY_DATA_DIR, else ./.dvrelay)")
	addr := fs.String("addr", "127.0.0.1:7071", "address of a running 'handler serve', used when it owns the data dir")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var seqs []int64
	switch verb {
	case "list":
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "handler dlq list: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
	case "resubmit", "purge":
		if fs.NArg() == 0 {
			fmt.Fprintf(stderr, "handler dlq %s: give one or more sequence numbers (see 'handler dlq list')\n", verb)
			return 2
		}
		for _, a := range fs.Args() {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil || n < 1 {
				fmt.Fprintf(stderr, "handler dlq %s: %q is not a sequence number\n", verb, a)
				return 2
			}
			seqs = append(seqs, n)
		}
	default:
		fmt.Fprintf(stderr, "handler dlq: unknown command %q (list, resubmit, purge)\n", verb)
		return 2
	}

	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler dlq: configuration:\n%v\n", err)
		return 2
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	ops, closeOps, err := dlqOps(ctx, cfg, *addr, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler dlq: %v\n", err)
		return 1
	}
	defer closeOps()

	switch verb {
	case "list":
		items, err := ops.list(ctx, *limit)
		if err != nil {
			fmt.Fprintf(stderr, "handler dlq list: %v\n", err)
			return 1
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(items)
			return 0
		}
		printDeadLetters(stdout, items)
		return 0
	default:
		code := 0
		for _, seq := range seqs {
			var msg string
			if verb == "resubmit" {
				var id string
				id, err = ops.resubmit(ctx, seq)
				msg = fmt.Sprintf("resubmitted %d as message %s", seq, id)
			} else {
				err = ops.purge(ctx, seq)
				msg = fmt.Sprintf("purged %d", seq)
			}
			if err != nil {
				fmt.Fprintf(stderr, "handler dlq %s %d: %v\n", verb, seq, err)
				code = 1
				continue
			}
			fmt.Fprintln(stdout, msg)
		}
		return code
	}
}

type dlqOperations struct {
	list     func(ctx context.Context, limit int) ([]deadLetterView, error)
	resubmit func(ctx context.Context, seq int64) (string, error)
	purge    func(ctx context.Context, seq int64) error
}

func dlqOps(ctx context.Context, cfg config.Config, addr string, stderr io.Writer) (dlqOperations, func(), error) {
	b, err := openBackend(ctx, cfg, discardLogger())
	if errors.Is(err, local.ErrDirInUse) {
		fmt.Fprintf(stderr, "handler dlq: %s is in use by a running handler serve; asking it at http://%s\n", cfg.DataDir, addr)
		return httpDLQ(cfg, addr), func() {}, nil
	}
	if err != nil {
		return dlqOperations{}, nil, err
	}
	ops := dlqOperations{
		list: func(ctx context.Context, limit int) ([]deadLetterView, error) {
			items, err := b.deadLetters.ListDeadLetters(ctx, limit)
			views := make([]deadLetterView, 0, len(items))
			for _, d := range items {
				views = append(views, viewOf(d))
			}
			return views, err
		},
		resubmit: b.deadLetters.Resubmit,
		purge: func(ctx context.Context, seq int64) error {
			if b.purge == nil {
				return fmt.Errorf("purge is not supported on the %s backend; complete the message with your Service Bus tooling", b.name)
			}
			return b.purge(ctx, seq)
		},
	}
	return ops, func() { _ = b.close(context.WithoutCancel(ctx)) }, nil
}

// httpDLQ talks to the dead-letter routes of a running `handler serve`.
func httpDLQ(cfg config.Config, addr string) dlqOperations {
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(ctx context.Context, method, path string, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		if len(cfg.WebhookSecrets) > 0 {
			req.Header.Set(cfg.SecretHeader, cfg.WebhookSecrets[0])
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("ask handler serve at %s: %w", addr, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if resp.StatusCode/100 != 2 {
			var p struct{ Detail string }
			_ = json.Unmarshal(body, &p)
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
		}
		return json.NewDecoder(bytes.NewReader(body)).Decode(out)
	}
	return dlqOperations{
		list: func(ctx context.Context, limit int) ([]deadLetterView, error) {
			var out struct {
				DeadLetters []deadLetterView `json:"deadLetters"`
			}
			err := do(ctx, http.MethodGet, "/api/deadletters?limit="+strconv.Itoa(limit), &out)
			return out.DeadLetters, err
		},
		resubmit: func(ctx context.Context, seq int64) (string, error) {
			var out struct {
				MessageID string `json:"messageId"`
			}
			err := do(ctx, http.MethodPost, "/api/deadletters/"+strconv.FormatInt(seq, 10)+"/resubmit", &out)
			return out.MessageID, err
		},
		purge: func(context.Context, int64) error {
			return errors.New("purge needs the data dir: stop handler serve first")
		},
	}
}

func printDeadLetters(w io.Writer, items []deadLetterView) {
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
