package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
)

func lookupFrom(m map[string]string) config.Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad_defaults_select_the_embedded_queue(t *testing.T) {
	c, err := config.Load(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend() != config.BackendEmbedded {
		t.Errorf("backend = %s, want embedded", c.Backend())
	}
	if c.QueueName != "dataverse-events" || c.DeadLetterQueueName != "dataverse-events-deadletter" {
		t.Errorf("queue names = %q, %q", c.QueueName, c.DeadLetterQueueName)
	}
	if c.MaxBodyBytes != 1<<20 || c.PublishTimeout != 10*time.Second || c.SecretHeader != "x-dvrelay-secret" {
		t.Errorf("intake defaults = %d, %s, %q", c.MaxBodyBytes, c.PublishTimeout, c.SecretHeader)
	}
	if c.WorkerConcurrency != 16 || c.MaxDeliveryCount != 10 || c.LockDuration != 30*time.Second {
		t.Errorf("worker defaults = %d, %d, %s", c.WorkerConcurrency, c.MaxDeliveryCount, c.LockDuration)
	}
}

func TestLoad_selects_service_bus_from_a_connection_string_or_a_namespace(t *testing.T) {
	for _, key := range []string{"ServiceBusConnection", "ServiceBusConnection__fullyQualifiedNamespace"} {
		c, err := config.Load(lookupFrom(map[string]string{key: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Backend() != config.BackendServiceBus {
			t.Errorf("%s set: backend = %s", key, c.Backend())
		}
	}
}

func TestLoad_splits_rotated_secrets_and_trims_blanks(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{"DVRELAY_WEBHOOK_SECRET": " old , new ,,"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.WebhookSecrets, "|") != "old|new" {
		t.Errorf("secrets = %q", c.WebhookSecrets)
	}
}

func TestLoad_names_every_bad_setting_in_one_error(t *testing.T) {
	_, err := config.Load(lookupFrom(map[string]string{
		"DVRELAY_PUBLISH_TIMEOUT":    "ten",
		"DVRELAY_MAX_BODY_BYTES":     "-1",
		"DVRELAY_WORKER_CONCURRENCY": "many",
		"DVRELAY_USE_SESSIONS":       "perhaps",
		"DVRELAY_LOG_LEVEL":          "loud",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`DVRELAY_PUBLISH_TIMEOUT: "ten" is not a positive duration`,
		`DVRELAY_MAX_BODY_BYTES: "-1"`,
		`DVRELAY_WORKER_CONCURRENCY: "many"`,
		`DVRELAY_USE_SESSIONS: "perhaps"`,
		`DVRELAY_LOG_LEVEL: "loud"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoad_refuses_both_connection_forms_at_once(t *testing.T) {
	_, err := config.Load(lookupFrom(map[string]string{
		"ServiceBusConnection":                          "Endpoint=sb://x/",
		"ServiceBusConnection__fullyQualifiedNamespace": "x.servicebus.windows.net",
	}))
	if err == nil || !strings.Contains(err.Error(), "ServiceBusConnection:") {
		t.Fatalf("err = %v", err)
	}
}
