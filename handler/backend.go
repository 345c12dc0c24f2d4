package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/consumer"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/queue/servicebus"
)

// deadLetterAdmin is what support tooling needs from a backend's dead-letter queue.
type deadLetterAdmin interface {
	ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error)
	Resubmit(ctx context.Context, seq int64) (string, error)
}

// backend is one queue backend, opened from configuration alone.
type backend struct {
	name      string
	detail    string // where it lives, for the start-up log line
	publisher queue.Publisher
	// triggerSettler applies outcomes for the EventWorker function, where the host owns the lock.
	triggerSettler worker.Settler
	// receiver feeds the in-process consumer and settles its outcomes.
	receiver    consumer.Queue
	deadLetters deadLetterAdmin
	// stats is nil when the backend cannot count (Service Bus without the admin API).
	stats func(ctx context.Context) (queue.Stats, error)
	purge func(ctx context.Context, seq int64) error
	close func(ctx context.Context) error
}

func openBackend(ctx context.Context, cfg config.Config, log *slog.Logger) (*backend, error) {
	if cfg.Backend() == config.BackendServiceBus {
		return openServiceBus(cfg)
	}
	return openEmbedded(ctx, cfg, log)
}

func openEmbedded(ctx context.Context, cfg config.Config, log *slog.Logger) (*backend, error) {
	q, err := local.Open(ctx, cfg.DataDir, local.Options{
		LockDuration:     cfg.LockDuration,
		MaxDeliveryCount: cfg.MaxDeliveryCount,
		DuplicateWindow:  cfg.DuplicateWindow,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("embedded queue (DVRELAY_DATA_DIR): %w", err)
	}
	return &backend{
		name:      config.BackendEmbedded,
		detail:    cfg.DataDir,
		publisher: q,
		// Nothing triggers EventWorker without Service Bus; should something call it, its
		// outcomes land on this queue the way the trigger's would.
		triggerSettler: servicebus.NewTriggerSettler(q, q),
		receiver:       q,
		deadLetters:    q,
		stats:          q.Stats,
		purge:          q.PurgeDeadLetter,
		close:          func(context.Context) error { return q.Close() },
	}, nil
}

func openServiceBus(cfg config.Config) (*backend, error) {
	client, err := servicebus.NewClient(servicebus.ConnectionSettings{
		ConnectionString:        cfg.ServiceBusConnectionString,
		FullyQualifiedNamespace: cfg.ServiceBusNamespace,
		ClientID:                cfg.ServiceBusClientID,
	})
	if err != nil {
		return nil, fmt.Errorf("service bus: %w", err)
	}
	pub, err := servicebus.NewPublisher(client, cfg.QueueName)
	if err != nil {
		return nil, fmt.Errorf("service bus sender for ServiceBusQueueName %q: %w", cfg.QueueName, err)
	}
	dlq, err := servicebus.NewDeadLetterQueue(client, cfg.QueueName, cfg.DeadLetterQueueName)
	if err != nil {
		return nil, fmt.Errorf("service bus dead-letter queue DeadLetterQueueName %q: %w", cfg.DeadLetterQueueName, err)
	}
	recv, err := servicebus.NewReceiver(client, cfg.QueueName)
	if err != nil {
		return nil, fmt.Errorf("service bus receiver for ServiceBusQueueName %q: %w", cfg.QueueName, err)
	}
	detail := cfg.ServiceBusNamespace
	if detail == "" {
		detail = "connection string"
	}
	return &backend{
		name:           config.BackendServiceBus,
		detail:         detail + " queue " + cfg.QueueName,
		publisher:      pub,
		triggerSettler: servicebus.NewTriggerSettler(pub, dlq),
		receiver:       recv,
		deadLetters:    dlq,
		purge:          dlq.PurgeDeadLetter,
		close: func(ctx context.Context) error {
			return errors.Join(recv.Close(ctx), pub.Close(ctx), dlq.Close(ctx), client.Close(ctx))
		},
	}, nil
}
