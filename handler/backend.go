package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/queue/servicebus"
	"github.com/dvrelay/dvrelay/internal/transport/consumer"
)

// backend is one queue backend, opened from configuration alone.
type backend struct {
	name      string
	detail    string // where it lives, for the start-up log line
	publisher queue.Publisher
	// triggerSettler applies outcomes for the EventWorker function, where the host owns the lock.
	triggerSettler queue.Settler
	// receiver feeds the in-process consumer and settles its outcomes.
	receiver    consumer.Queue
	deadLetters queue.DeadLetterAdmin
	// stats is nil when the backend cannot count (Service Bus without the admin API).
	stats func(ctx context.Context) (queue.Stats, error)
	close func(ctx context.Context) error
	// dataDir is the embedded queue's directory; empty for Service Bus.
	dataDir string
}

func openBackend(ctx context.Context, cfg config.Config, log *slog.Logger) (*backend, error) {
	if cfg.Backend() == config.BackendServiceBus {
		return openServiceBus(cfg)
	}
	return openEmbedded(ctx, cfg, log)
}

func openEmbedded(ctx context.Context, cfg config.Config, log *slog.Logger) (*backend, error) {
	q, err := local.Open(ctx, cfg.DataDir, local.Options{
		LockDuration:      cfg.LockDuration,
		MaxDeliveryCount:  cfg.MaxDeliveryCount,
		DuplicateWindow:   cfg.DuplicateWindow,
		HistoryMaxAge:     cfg.HistoryMaxAge,
		HistoryMaxEntries: cfg.HistoryMaxEntries,
		Retained:          (&retainedMemory{}).set,
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
		close:          func(context.Context) error { return q.Close() },
		dataDir:        cfg.DataDir,
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
	var recv interface {
		consumer.Queue
		Close(ctx context.Context) error
	}
	if cfg.UseSessions {
		// One record per session, one session per worker place: see servicebus.SessionReceiver.
		recv = servicebus.NewSessionReceiver(client, cfg.QueueName, servicebus.SessionOptions{Places: cfg.WorkerConcurrency})
	} else {
		plain, err := servicebus.NewReceiver(client, cfg.QueueName)
		if err != nil {
			return nil, fmt.Errorf("service bus receiver for ServiceBusQueueName %q: %w", cfg.QueueName, err)
		}
		recv = plain
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
		close: func(ctx context.Context) error {
			return errors.Join(recv.Close(ctx), pub.Close(ctx), dlq.Close(ctx), client.Close(ctx))
		},
	}, nil
}

// announce records in the embedded queue's directory that this process answers at addr, so
// `handler dlq` finds the serve that owns the directory wherever it listens; the returned
// function removes the record at a clean shutdown. Service Bus has no directory to record in.
func (b *backend) announce(addr string, log *slog.Logger) (remove func()) {
	if b.dataDir == "" {
		return func() {}
	}
	rm, err := local.RecordOwner(b.dataDir, addr)
	if err != nil {
		log.Warn("handler dlq will not find this process by itself; it needs --addr", slog.String("error", err.Error()))
		return func() {}
	}
	return func() {
		if err := rm(); err != nil {
			log.Warn("remove the owner record", slog.String("error", err.Error()))
		}
	}
}
