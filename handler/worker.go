package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

// newWorker builds the worker from the routes file and the Dataverse settings. Without
// DATAVERSE_URL the dataverse-update and dataverse-read steps are skipped (the worker warns once
// at start).
// observe, when not nil, hears of every step run (for the step latency metrics).
func newWorker(_ context.Context, cfg config.Config, parser *event.Parser, log *slog.Logger, observe worker.StepObserver) (*worker.Worker, error) {
	strict, err := cfg.StrictRoutes()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	deps := worker.Deps{Settings: cfg.RouteVariable, SettingNames: config.EnvironmentNames, Decoder: parser, ObserveStep: observe}
	if cfg.DataverseURL != "" {
		// A user-assigned identity is named by AZURE_CLIENT_ID; without it, the identity the app
		// already uses for Service Bus (infra/ deploys one identity for both) is the natural one.
		clientID := ""
		if cfg.AzureClientID == "" {
			clientID = cfg.ServiceBusClientID
		}
		cred, err := dataverse.NewCredential(dataverse.Identity{
			TenantID:         cfg.AzureTenantID,
			ClientID:         cfg.AzureClientID,
			ClientSecret:     cfg.AzureClientSecret,
			IdentityEndpoint: cfg.IdentityEndpoint,
		}, clientID)
		if err != nil {
			return nil, fmt.Errorf("dataverse credential: %w", err)
		}
		client, err := dataverse.NewClient(cfg.DataverseURL, cred, &dataverse.Options{Concurrency: cfg.WorkerConcurrency})
		if err != nil {
			return nil, fmt.Errorf("dataverse client: %w", err)
		}
		deps.Dataverse = client
	}
	retry := worker.RetryPolicy{LaterBase: cfg.RetryDelay}
	if cfg.Backend() == config.BackendServiceBus && cfg.UseSessions {
		// A session keeps a record's order only if a retry keeps its place in it: see
		// worker.InPlacePolicy.
		retry = worker.InPlacePolicy(retry)
	}
	w, err := worker.New(worker.Config{
		RoutesPath:    cfg.RoutesPath, // resolved against FUNCTIONS_APP_ROOT_PATH by config
		MaxAttempts:   cfg.MaxAttempts,
		Retry:         retry,
		IgnoreUserIDs: cfg.IgnoreUserIDs,
		Concurrency:   cfg.WorkerConcurrency,
		StrictRoutes:  strict,
	}, deps, log)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("worker: %w (run from the app root, where routes.json is, or set DVRELAY_ROUTES)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}
