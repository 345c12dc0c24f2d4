package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
)

// runServe is standalone mode: the intake on a local port and the worker in the same process.
func runServe(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7071", "address to listen on (host:port)")
	dataDir := fs.String("data-dir", "", "embedded queue directory (default $DVRELAY_DATA_DIR, else ./.dvrelay)")
	postOnStart := fs.String("post", "", "once listening, post this event file to the intake (a demo: watch it flow in the logs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "handler serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := checkListenAddr(*addr, lookup); err != nil {
		fmt.Fprintf(stderr, "handler serve: %v\n", err)
		return 2
	}
	a, err := loadApp(ctx, lookup, *dataDir, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "handler serve: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "handler serve: listen on %s: %v\n", *addr, err)
		_ = a.backend.close(context.WithoutCancel(ctx))
		return 1
	}
	mux := http.NewServeMux()
	a.routes(mux)
	a.deadLetterRoutes(mux)
	if *postOnStart != "" {
		url := "http://" + ln.Addr().String() + "/api/dataverse/webhook"
		go func() {
			status, body, err := postFile(ctx, url, *postOnStart, lookup)
			if err != nil {
				a.log.Error("post sample event", slog.String("file", *postOnStart), slog.String("error", err.Error()))
				return
			}
			a.log.Info("sample event posted", slog.String("file", *postOnStart), slog.Int("status", status), slog.String("answer", strings.TrimSpace(body)))
		}()
	}
	if err := a.serve(ctx, ln, mux, true); err != nil {
		a.log.Error("serve stopped with an error", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

// checkListenAddr refuses to expose an unauthenticated intake: anything but a loopback address
// needs DVRELAY_WEBHOOK_SECRET, since anyone who can reach the port could queue events.
func checkListenAddr(addr string, lookup func(string) (string, bool)) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q is not host:port: %w", addr, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	if v, ok := lookup("DVRELAY_WEBHOOK_SECRET"); ok && v != "" {
		return nil
	}
	return fmt.Errorf("--addr %q is reachable from other machines, so DVRELAY_WEBHOOK_SECRET must be set "+
		"(Dataverse sends it in a header: HttpHeader auth); or listen on 127.0.0.1", addr)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
