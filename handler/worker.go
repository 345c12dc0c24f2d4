package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

// newWorker builds the worker from the routes file and the Dataverse settings. Without
// DATAVERSE_URL the dataverse-update steps are skipped (the worker warns once at start).
func newWorker(_ context.Context, cfg config.Config, lookup func(string) (string, bool), parser *event.Parser, log *slog.Logger) (*worker.Worker, error) {
	deps := worker.Deps{Settings: lookup, Decoder: parser}
	if cfg.DataverseURL != "" {
		// A user-assigned identity is named by AZURE_CLIENT_ID; without it, the identity the app
		// already uses for Service Bus (infra/ deploys one identity for both) is the natural one.
		clientID := ""
		if v, _ := lookup("AZURE_CLIENT_ID"); v == "" {
			clientID = cfg.ServiceBusClientID
		}
		cred, err := dataverse.NewCredential(lookup, clientID)
		if err != nil {
			return nil, fmt.Errorf("dataverse credential: %w", err)
		}
		client, err := dataverse.NewClient(cfg.DataverseURL, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("DATAVERSE_URL: %w", err)
		}
		deps.Dataverse = client
	}
	routes := cfg.RoutesPath
	// The Functions host starts the handler in the app root; standalone users may run it from
	// elsewhere, so a relative path is resolved against FUNCTIONS_APP_ROOT_PATH when the host set it.
	if root, ok := lookup("FUNCTIONS_APP_ROOT_PATH"); ok && root != "" && !filepath.IsAbs(routes) {
		routes = filepath.Join(root, routes)
	}
	w, err := worker.New(worker.Config{
		RoutesPath:    routes,
		MaxAttempts:   cfg.MaxAttempts,
		IgnoreUserIDs: cfg.IgnoreUserIDs,
	}, deps, log)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("worker: %w (run from the app root, where routes.json is, or set DVRELAY_ROUTES)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}
