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
	"sync"
	"syscall"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"golang.org/x/net/netutil"
)

// serveFlags are `handler serve`'s flags.
type serveFlags struct {
	addr        string
	dataDir     string
	postOnStart string
}

// runServe is standalone mode: the intake on a local port and the worker in the same process.
func runServe(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	flags, code, ok := parseServe(args, stderr)
	if !ok {
		return code
	}
	cfg, ok := loadConfig(lookup, "handler serve", stderr)
	if !ok {
		return 2
	}
	if flags.dataDir != "" {
		cfg.DataDir = flags.dataDir
	}
	consoleCfg, err := config.LoadConsole(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler serve: configuration:\n%v\n", err)
		return 2
	}
	if err := checkListenAddr(flags.addr, cfg.WebhookSecrets); err != nil {
		fmt.Fprintf(stderr, "handler serve: %v\n", err)
		return 2
	}
	// Listen first: a port taken by another process stops the start before the data dir and
	// its queue are created.
	ln, err := net.Listen("tcp", flags.addr)
	if err != nil {
		fmt.Fprintf(stderr, "handler serve: listen on %s: %v\n", flags.addr, err)
		if errors.Is(err, syscall.EADDRINUSE) {
			fmt.Fprintf(stderr, "Another process listens on %s (another handler serve?).\n"+
				"Stop it, or listen elsewhere with --addr, e.g. --addr 127.0.0.1:7072; then post with --url http://127.0.0.1:7072/api/dataverse/webhook\n", flags.addr)
		}
		return 1
	}
	a, err := newApp(ctx, cfg, stdout)
	if err != nil {
		_ = ln.Close()
		fmt.Fprintf(stderr, "handler serve: %v\n", err)
		return 2
	}
	defer a.backend.announce(ln.Addr().String(), a.log)()
	mux := http.NewServeMux()
	a.routes(mux)
	a.admin.DeadLetterRoutes(mux)
	a.metricsRoute(mux)
	a.startConsole(ctx, consoleCfg)
	if flags.postOnStart != "" {
		go a.postSample(ctx, "http://"+ln.Addr().String()+"/api/dataverse/webhook", flags.postOnStart)
	}
	limits := httpLimits{writeTimeout: intakeWriteTimeout(cfg), maxConnections: cfg.MaxConnections}
	if err := a.serve(ctx, ln, mux, limits, true); err != nil {
		a.log.Error("serve stopped with an error", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

// Bounds of the HTTP server that are not settings: no caller has a reason to need more.
const (
	// idleTimeout closes a keep-alive connection nobody uses. It is as long as .NET clients (the
	// Functions host, Dataverse) keep idle connections in their pools, one to two minutes, so
	// the client usually closes first and rarely sends a request on a connection the server has
	// just closed. At the connection cap idle connections are closed at once (capConnections).
	idleTimeout = 120 * time.Second
	// maxHeaderBytes: Dataverse and the Functions host send a few hundred bytes of headers.
	maxHeaderBytes = 64 << 10
)

// httpLimits are what the modes' HTTP servers differ in.
type httpLimits struct {
	writeTimeout time.Duration
	// maxConnections caps open connections; 0 leaves them uncapped.
	maxConnections int
}

// capConnections makes srv serve at most n connections from ln, and returns the listener to
// serve. Past the cap a new connection waits in the kernel's backlog until one closes, so slow or
// idle clients cannot use up the process's file descriptors, which the queue file and the
// worker's outbound calls need too. The read timeouts free the slots of slow clients; idle
// keep-alive connections are closed as soon as the cap is reached (see idleShedder), so a
// caller in the backlog never waits for them to time out.
func capConnections(ln net.Listener, srv *http.Server, n int) net.Listener {
	shed := &idleShedder{srv: srv, limit: n}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		shed.track(s)
		if next != nil {
			next(c, s)
		}
	}
	return netutil.LimitListener(ln, n)
}

// idleShedder turns keep-alive off while the server holds its cap of connections: the idle ones
// are closed at once and busy ones close after their answer, so the slots go to the callers
// waiting for one. It turns keep-alive back on once a quarter of the slots are free again.
type idleShedder struct {
	srv   *http.Server
	limit int

	mu       sync.Mutex
	open     int
	shedding bool
}

func (s *idleShedder) track(state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.open++
	case http.StateClosed, http.StateHijacked:
		s.open--
	default:
		return
	}
	switch {
	case !s.shedding && s.open >= s.limit:
		s.shedding = true
		s.srv.SetKeepAlivesEnabled(false) // also closes the idle connections
	case s.shedding && s.open <= s.limit*3/4:
		s.shedding = false
		s.srv.SetKeepAlivesEnabled(true)
	}
}

// httpServer is the HTTP server of both modes. Its bounds keep a slow or hostile client from
// holding a connection, a goroutine and memory: the headers must arrive within
// DVRELAY_READ_HEADER_TIMEOUT and the whole request within DVRELAY_READ_TIMEOUT (a body
// dribbled byte by byte is cut off), the answer must be written within writeTimeout, and an idle
// connection is closed after idleTimeout.
func (a *app) httpServer(ctx context.Context, h http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: a.cfg.ReadHeaderTimeout,
		ReadTimeout:       a.cfg.ReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// intakeWriteTimeout bounds an answer in serve mode, counted from the end of the headers: the
// body may take up to DVRELAY_READ_TIMEOUT, the publish up to DVRELAY_PUBLISH_TIMEOUT, and a
// little is left to write the answer. Past it the connection is closed unanswered.
func intakeWriteTimeout(cfg config.Config) time.Duration {
	return cfg.ReadTimeout + cfg.PublishTimeout + 5*time.Second
}

// parseServe reads the flags. When ok is false the command is over, with exit code code (0
// after -h).
func parseServe(args []string, stderr io.Writer) (flags serveFlags, code int, ok bool) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&flags.addr, "addr", "127.0.0.1:7071", "address to listen on (host:port)")
	fs.StringVar(&flags.dataDir, "data-dir", "", "embedded queue directory (default $DVRELAY_DATA_DIR, else ./"+config.DefaultDataDir+")")
	fs.StringVar(&flags.postOnStart, "post", "", "once listening, post this event file to the intake (a demo: watch it flow in the logs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flags, 0, false
		}
		return flags, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "handler serve: unexpected argument %q\n", fs.Arg(0))
		return flags, 2, false
	}
	return flags, 0, true
}

// postSample posts file to the intake at url, as `serve --post` promises, and logs the answer.
func (a *app) postSample(ctx context.Context, url, file string) {
	status, body, err := postFile(ctx, url, file, a.cfg, nil)
	if err != nil {
		a.log.Error("post sample event", slog.String("file", file), slog.String("error", err.Error()))
		return
	}
	a.log.Info("sample event posted", slog.String("file", file), slog.Int("status", status), slog.String("answer", strings.TrimSpace(body)))
}

// checkListenAddr refuses to expose an unauthenticated intake: anything but a loopback address
// needs DVRELAY_WEBHOOK_SECRET, since anyone who can reach the port could queue events. It looks
// at the secrets the intake will check, as parsed, never at the raw setting.
func checkListenAddr(addr string, secrets []string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q is not host:port: %w", addr, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	if len(secrets) > 0 {
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
