package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/console"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/support"
)

// supportService is the support operations over b, with its history where the backend keeps
// one. It reads on the backend's read side, so support's reads never hold up the intake.
func supportService(b *backend, log *slog.Logger) *support.Service {
	s := &support.Service{Source: support.Backend{Q: b.deadLetters, ReadOnly: true}, Stats: b.stats, Log: log}
	if h, ok := b.deadLetters.(queue.HistoryReader); ok {
		s.History = h
	}
	if g, ok := b.deadLetters.(queue.DeadLetterGrouper); ok {
		s.Grouper = g
	}
	return s
}

// startConsole serves the support console on its own address until ctx ends. The console is
// support's tool, not the intake: when its address cannot be had, serve logs why and runs on
// without it rather than refuse events.
func (a *app) startConsole(ctx context.Context, cc config.Console) {
	if cc.Addr == "" {
		return
	}
	c, err := console.New(console.Config{
		Support: supportService(a.backend, a.log), Auth: a.auth, DataverseURL: a.cfg.DataverseURL, Backend: a.backend.name, Log: a.log,
	})
	if err != nil {
		a.log.ErrorContext(ctx, "support console not started", slog.String("error", err.Error()))
		return
	}
	ln, err := net.Listen("tcp", cc.Addr)
	if err != nil {
		a.log.ErrorContext(ctx, "support console not started: its address is not free; set DVRELAY_CONSOLE_ADDR (or off)",
			slog.String("addr", cc.Addr), slog.String("error", err.Error()))
		return
	}
	srv := a.httpServer(ctx, c.Handler(), 30*time.Second)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.ErrorContext(ctx, "support console stopped", slog.String("error", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	a.log.InfoContext(ctx, "support console listening", slog.String("url", "http://"+ln.Addr().String()+"/console/"))
}
