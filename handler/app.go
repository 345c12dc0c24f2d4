package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/metrics"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/platform/logctx"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
	"github.com/dvrelay/dvrelay/internal/transport/consumer"
	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
	"github.com/dvrelay/dvrelay/internal/transport/httpintake"
	"github.com/dvrelay/dvrelay/internal/transport/httpworker"
)

// app is everything one process runs, wired once from the configuration.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	backend *backend
	intake  *webhook.Intake
	worker  *worker.Worker
	admin   *admin.Server
	auth    *httpauth.Authorizer // the webhook's secret, guarding the support routes and /metrics
	metrics *metrics.Metrics
}

// newLogger logs at level in format (config.LogFormat*): JSON lines for a log pipeline, or
// key=value text for a person; auto picks text when w is a terminal.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // config.Load has checked the value
	// logctx: ids the transport puts in a request's context (the host's invocationId) are
	// written on every line logged with it.
	if logFormat(format, isTerminal(w)) == config.LogFormatText {
		return slog.New(logctx.NewHandler(newOperatorText(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: readableAttr}))))
	}
	return slog.New(logctx.NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})))
}

// logFormat resolves the setting: auto is text on a terminal and JSON anywhere else (a file, a
// pipe, a container runtime collecting stdout).
func logFormat(setting string, terminal bool) string {
	switch setting {
	case config.LogFormatText, config.LogFormatJSON:
		return setting
	}
	if terminal {
		return config.LogFormatText
	}
	return config.LogFormatJSON
}

// isTerminal reports whether w is a character device, as a terminal is. A mode check is enough
// here and needs no terminal library; the one other character device stdout is commonly bound
// to, /dev/null, shows nothing whichever format it gets.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// textHiddenIDs are the ids that join machine logs (a W3C trace and span, the queue message,
// the host's invocation); a person at a terminal goes by eventId, or correlationId on a line
// with no event (operatorText), which handler dlq, the intake's answers and the problem
// documents show. JSON lines keep them all.
var textHiddenIDs = map[string]bool{"traceId": true, "spanId": true, "messageId": true, "invocationId": true}

// readableAttr shortens the text format for a person: the time of day to the millisecond (the
// date is today's), only the ids a person reads, and no empty fields (an outcome without a
// reason says nothing by "reason=").
func readableAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch {
	case textHiddenIDs[a.Key]:
		return slog.Attr{}
	case a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime:
		return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05.000"))
	case a.Value.Kind() == slog.KindString && a.Value.String() == "":
		return slog.Attr{}
	}
	return a
}

// newApp builds the intake, the worker, the queue backend and the admin routes from the
// settings. Any error here is a start-up problem and is reported before listening.
func newApp(ctx context.Context, cfg config.Config, stdout io.Writer) (*app, error) {
	log := newLogger(stdout, cfg.LogLevel, cfg.LogFormat)

	parser, err := event.NewParser()
	if err != nil {
		return nil, fmt.Errorf("compile event schemas: %w", err)
	}
	m := metrics.New(metrics.Options{Log: log})
	w, err := newWorker(ctx, cfg, parser, log, m.ObserveStep)
	if err != nil {
		return nil, err
	}
	b, err := openBackend(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	intakeCfg := intakeConfig(cfg)
	if b.stats != nil {
		m.CountQueue(queueStats(b.stats))
	}
	// The admin routes take the webhook's secret: one secret to rotate, and the same check.
	auth := httpauth.New(intakeCfg.SecretHeader, intakeCfg.Secrets...)
	intake := webhook.New(intakeCfg, parser, m.Publisher(b.publisher), log)
	adm := admin.NewServer(admin.Config{
		Backend:     b.name,
		DeadLetters: b.deadLetters,
		Stats:       b.stats,
		Auth:        auth,
		Publishing:  intake.PublishHealth,
		Records:     supportService(b, log),
	}, log)
	log.InfoContext(ctx, "backend selected", slog.String("backend", b.name), slog.String("detail", b.detail))
	return &app{cfg: cfg, log: log, backend: b, intake: intake, worker: w, admin: adm, auth: auth, metrics: m}, nil
}

// queueStats reads the backend's counts as the metrics show them.
func queueStats(stats func(ctx context.Context) (queue.Stats, error)) func(ctx context.Context) (metrics.QueueStats, error) {
	return func(ctx context.Context) (metrics.QueueStats, error) {
		s, err := stats(ctx)
		return metrics.QueueStats{
			Queued:          s.Queued,
			Scheduled:       s.Scheduled,
			DeadLettered:    s.DeadLettered,
			OldestQueuedAge: s.OldestQueuedAge,
		}, err
	}
}

// routes are the paths both runtimes serve. Functions mode adds the envelope forms.
func (a *app) routes(mux *http.ServeMux) {
	mux.Handle("/api/dataverse/webhook", a.metrics.Intake(httpintake.Forwarded(a.intake, a.cfg.ReadTimeout))) // non-POST: 405 with Allow
	a.admin.HealthRoute(mux)
}

// metricsRoute adds GET /metrics (Prometheus text format), behind the webhook's secret when one
// is set, as the support routes are: the counts and route names are not for anyone who can reach
// the port.
func (a *app) metricsRoute(mux *http.ServeMux) {
	mux.Handle("GET /metrics", a.auth.Require(a.metrics.Handler()))
}

// runConsumer drives the worker from the backend's receiver until ctx ends, then lets
// in-flight messages finish within the shutdown grace.
func (a *app) runConsumer(ctx context.Context) error {
	c := consumer.New(a.backend.receiver, a.metrics.Processor(a.worker), consumer.Options{
		Concurrency:   a.cfg.WorkerConcurrency,
		LockDuration:  a.cfg.LockDuration,
		ShutdownGrace: a.cfg.ShutdownGrace,
	}, a.log)
	return c.Run(ctx)
}

// serve listens on ln and runs the consumer (when withConsumer) until ctx ends; then it stops
// taking requests, finishes those in flight, drains the worker and closes the backend.
// limits are the mode's bounds on the HTTP server (see httpServer and capConnections).
func (a *app) serve(ctx context.Context, ln net.Listener, mux *http.ServeMux, limits httpLimits, withConsumer bool) error {
	srv := a.httpServer(ctx, mux, limits.writeTimeout)
	if limits.maxConnections > 0 {
		ln = capConnections(ln, srv, limits.maxConnections)
	}
	consumerCtx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumer()
	var wg sync.WaitGroup
	var consumerErr error
	if withConsumer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consumerErr = a.runConsumer(consumerCtx)
		}()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	a.log.InfoContext(ctx, "listening", slog.String("addr", ln.Addr().String()), slog.Bool("worker", withConsumer))

	var err error
	select {
	case <-ctx.Done():
		a.log.InfoContext(ctx, "shutting down: intake closed, draining in-flight work")
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
	}
	stopConsumer()
	wg.Wait()
	if consumerErr != nil && !errors.Is(consumerErr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("worker: %w", consumerErr))
	}
	// The drain above may have used up the grace; closing the backend gets its own time, so
	// Service Bus links close cleanly and hand back messages received but not yet processed.
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelClose()
	if cerr := a.backend.close(closeCtx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close backend: %w", cerr))
	}
	a.log.InfoContext(context.WithoutCancel(ctx), "stopped")
	return err
}

// runCustomHandler is the Functions mode: the host picked the port and calls us on loopback.
func runCustomHandler(ctx context.Context, lookup config.Lookup, stdout, stderr io.Writer) int {
	cfg, err := config.Load(lookup)
	port := cfg.CustomHandlerPort
	if port == "" {
		fmt.Fprint(stderr, "handler: FUNCTIONS_CUSTOMHANDLER_PORT is not set, so this is not the Functions host starting a custom handler.\n\n"+usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "handler: configuration:\n%v\n", err)
		return 2
	}
	a, err := newApp(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "handler: %v\n", err)
		return 2
	}
	mux := http.NewServeMux()
	a.routes(mux)
	mux.Handle("GET /{$}", customhandler.Ready())
	mux.Handle("POST /DataverseWebhook", httpintake.Envelope(a.intake, "req", a.log))
	mux.Handle("POST /EventWorker", httpworker.New(a.worker, a.backend.triggerSettler, "msg", a.log,
		httpworker.Options{MaxHold: worker.InPlaceHold}))

	// The host always calls 127.0.0.1 (never localhost, which may resolve to ::1 only).
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintf(stderr, "handler: listen on FUNCTIONS_CUSTOMHANDLER_PORT %s: %v\n", port, err)
		_ = a.backend.close(context.WithoutCancel(ctx))
		return 1
	}
	// With Service Bus the host's trigger feeds the worker; with the embedded queue nobody
	// else will, so the worker loop runs in process.
	withConsumer := a.backend.name == config.BackendEmbedded
	// An EventWorker invocation answers after the whole delivery (bounded by the worker), a
	// retry in place's wait on a session queue (worker.InPlaceHold) and the reroute of its
	// outcome; cutting it short would make the host redeliver work done. The host is the only
	// client, so its connections are not capped.
	limits := httpLimits{writeTimeout: worker.DefaultProcessTimeout + worker.InPlaceHold + time.Minute}
	if err := a.serve(ctx, ln, mux, limits, withConsumer); err != nil {
		a.log.Error("handler stopped with an error", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
