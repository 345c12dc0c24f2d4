package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

// dlqSource is the opened source with what the command says about it.
type dlqSource struct {
	support.Source
	where  string // for messages: "the embedded queue in /abs/dir", "handler serve at host:port", …
	dir    string // the embedded queue's data dir; empty on Service Bus
	remote *admin.Client
	// records answers `dlq history`: the backend's history, or the serve's admin API.
	records support.RecordFinder
	close   func()
}

// openDLQSource opens the configured backend. On the embedded backend it first checks that the
// data dir holds a queue (and creates nothing when it does not); when a running process owns the
// directory it asks that process, at addr or else at the address it recorded there.
func openDLQSource(ctx context.Context, cfg config.Config, addr string, stderr io.Writer) (*dlqSource, error) {
	if cfg.Backend() == config.BackendServiceBus {
		b, err := openBackend(ctx, cfg, discardLogger())
		if err != nil {
			return nil, fmt.Errorf("%w\nCheck the ServiceBusConnection settings (see docs/settings.md)", err)
		}
		return &dlqSource{
			Source:  support.Backend{Q: b.deadLetters},
			where:   "Service Bus queue " + cfg.DeadLetterQueueName,
			records: supportService(b, discardLogger()),
			close:   func() { _ = b.close(context.WithoutCancel(ctx)) },
		}, nil
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if err := checkDataDir(dir); err != nil {
		return nil, fmt.Errorf("%w%s", err, servesBelow(dir))
	}
	cfg.DataDir = dir
	b, err := openBackend(ctx, cfg, discardLogger())
	if errors.Is(err, queue.ErrDirInUse) {
		src, err := askOwner(cfg, dir, addr, err, stderr)
		if src != nil {
			src.dir = dir
		}
		return src, err
	}
	if err != nil {
		return nil, err
	}
	return &dlqSource{
		Source:  support.Backend{Q: b.deadLetters},
		dir:     dir,
		where:   "the embedded queue in " + dir,
		records: supportService(b, discardLogger()),
		close:   func() { _ = b.close(context.WithoutCancel(ctx)) },
	}, nil
}

// checkDataDir makes sure dir holds an embedded queue. Opening one that does not exist would
// create it, empty, and the command would report no dead letters where it only looked in the
// wrong place.
func checkDataDir(dir string) error {
	ok, err := local.HasQueue(dir)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	what := "does not exist"
	if info, err := os.Stat(dir); err == nil && info.IsDir() {
		what = "holds no embedded queue"
	} else if err == nil {
		what = "is not a directory"
	}
	return usagef("no embedded queue at %s: the directory %s.\n"+
		"Run 'handler dlq' in the directory 'handler serve' runs in, or name its data dir with --data-dir DIR or DVRELAY_DATA_DIR.\n"+
		"(With Service Bus, set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace.)", dir, what)
}

// servesBelow names the running handler serves whose data dir is a directory inside dir, as
// the demo's serve --data-dir .dvrelay/demo is inside the default ./.dvrelay, with the command
// that reaches each; "" when there is none. A person who ran the demo and then 'handler dlq'
// otherwise learns only that the default holds nothing.
func servesBelow(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		if owner, ok, err := local.RecordedOwner(sub); err == nil && ok {
			fmt.Fprintf(&b, "\nA running handler serve (pid %d, at %s) holds %s: run 'handler dlq list --data-dir %s'",
				owner.PID, owner.Addr, sub, sub)
		}
	}
	return b.String()
}

// askOwner is the source when another process owns dir: the admin routes at addr, or else at
// the address the owner recorded in dir.
func askOwner(cfg config.Config, dir, addr string, inUse error, stderr io.Writer) (*dlqSource, error) {
	if addr == "" {
		owner, ok, err := local.RecordedOwner(dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w.\nThat process recorded no address it answers at (only 'handler serve' does). "+
				"If it is a handler serve, name its address with --addr HOST:PORT; else stop it and run the command again", inUse)
		}
		addr = owner.Addr
		fmt.Fprintf(stderr, "handler dlq: %s belongs to the running handler serve (pid %d); asking it at http://%s\n", dir, owner.PID, dialable(addr))
	}
	secret := ""
	if len(cfg.WebhookSecrets) > 0 {
		secret = cfg.WebhookSecrets[0]
	}
	c := admin.NewClient(dialable(addr), cfg.SecretHeader, secret)
	return &dlqSource{
		Source:  c,
		where:   fmt.Sprintf("the embedded queue in %s (through handler serve at %s)", dir, c.Addr()),
		remote:  c,
		records: c,
		close:   func() {},
	}, nil
}

// dialable turns a listen address into one to call: a serve listening on every interface
// (0.0.0.0:7071, [::]:7071, :7071) is reached on loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// unreachable reports whether err means the source itself stopped answering, so acting on the
// next dead letter would fail the same way.
func (s *dlqSource) unreachable(err error) bool {
	var op *net.OpError
	return s.remote != nil && errors.As(err, &op)
}

// explain adds to an error of the source what to do about it.
func (s *dlqSource) explain(err error) error {
	if s.remote == nil {
		return err
	}
	var status *admin.StatusError
	switch {
	case s.unreachable(err):
		return fmt.Errorf("%w\nThe handler serve that owned the data dir may have stopped: run the command again. "+
			"If it listens elsewhere, name its address with --addr HOST:PORT", err)
	case errors.As(err, &status) && status.Code == http.StatusUnauthorized:
		return fmt.Errorf("%w\nRun 'handler dlq' with the DVRELAY_WEBHOOK_SECRET that handler serve was started with", err)
	case errors.As(err, &status) && (status.Code == http.StatusNotFound || status.Code == http.StatusMethodNotAllowed) && status.ProblemType == "":
		return fmt.Errorf("%w\nThe handler serve at %s does not offer this route: it is an older build. Restart it with this one",
			err, s.remote.Addr())
	case errors.As(err, &status) && status.Code == http.StatusServiceUnavailable:
		return fmt.Errorf("%w\nhandler serve's log says why; try again once it is healthy (GET /api/health)", err)
	}
	return err
}

// collect lists what f selects, up to limit (all of it when limit is 0).
func (s *dlqSource) collect(ctx context.Context, f queue.DeadLetterFilter, limit int) ([]admin.DeadLetter, error) {
	return support.Collect(ctx, s.Source, f, limit)
}
