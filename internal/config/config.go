// Package config reads dvrelay's settings from the environment once, at start, into one struct.
// Every problem is reported together, each naming its setting, so a bad deployment fails fast
// with one clear message instead of one error per restart.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Backend names, as shown in logs and in /api/health.
const (
	BackendServiceBus = "servicebus"
	BackendEmbedded   = "embedded"
)

// Config is every setting dvrelay reads. The README's settings table lists the same names.
type Config struct {
	// Service Bus (Functions-host names, so one local.settings.json serves both).
	ServiceBusConnectionString string // ServiceBusConnection
	ServiceBusNamespace        string // ServiceBusConnection__fullyQualifiedNamespace
	ServiceBusClientID         string // ServiceBusConnection__clientId (user-assigned identity)
	QueueName                  string // ServiceBusQueueName
	DeadLetterQueueName        string // DeadLetterQueueName

	// Intake.
	MaxBodyBytes   int64
	WebhookSecrets []string
	SecretHeader   string
	PublishTimeout time.Duration
	UseSessions    bool

	// Embedded queue and worker loop.
	DataDir           string
	WorkerConcurrency int
	LockDuration      time.Duration
	MaxDeliveryCount  int
	DuplicateWindow   time.Duration
	ShutdownGrace     time.Duration

	// Worker.
	RoutesPath    string
	DataverseURL  string
	MaxAttempts   int // 0: the worker's default (retries spanning at least six hours)
	IgnoreUserIDs []string

	LogLevel string
}

// Backend says which queue backend the settings select: Service Bus when a connection is
// configured, the embedded queue otherwise. The choice follows configuration alone, in both modes.
func (c Config) Backend() string {
	if c.ServiceBusConnectionString != "" || c.ServiceBusNamespace != "" {
		return BackendServiceBus
	}
	return BackendEmbedded
}

// Lookup reads one setting; os.LookupEnv in production, a map in tests.
type Lookup func(name string) (string, bool)

// Load reads and checks every setting. The returned error joins one line per bad setting.
func Load(lookup Lookup) (Config, error) {
	r := reader{lookup: lookup}
	c := Config{
		ServiceBusConnectionString: r.str("ServiceBusConnection", ""),
		ServiceBusNamespace:        r.str("ServiceBusConnection__fullyQualifiedNamespace", ""),
		ServiceBusClientID:         r.str("ServiceBusConnection__clientId", ""),
		QueueName:                  r.str("ServiceBusQueueName", "dataverse-events"),
		DeadLetterQueueName:        r.str("DeadLetterQueueName", "dataverse-events-deadletter"),

		MaxBodyBytes:   r.positiveInt64("DVRELAY_MAX_BODY_BYTES", 1<<20),
		WebhookSecrets: r.list("DVRELAY_WEBHOOK_SECRET"),
		SecretHeader:   r.str("DVRELAY_WEBHOOK_SECRET_HEADER", "x-dvrelay-secret"),
		PublishTimeout: r.duration("DVRELAY_PUBLISH_TIMEOUT", 10*time.Second),
		UseSessions:    r.boolean("DVRELAY_USE_SESSIONS", false),

		DataDir:           r.str("DVRELAY_DATA_DIR", ".dvrelay"),
		WorkerConcurrency: r.positiveInt("DVRELAY_WORKER_CONCURRENCY", 16),
		LockDuration:      r.duration("DVRELAY_LOCK_DURATION", 30*time.Second),
		MaxDeliveryCount:  r.positiveInt("DVRELAY_MAX_DELIVERY_COUNT", 10),
		DuplicateWindow:   r.duration("DVRELAY_DUPLICATE_WINDOW", 10*time.Minute),
		ShutdownGrace:     r.duration("DVRELAY_SHUTDOWN_GRACE", 20*time.Second),

		RoutesPath:    r.str("DVRELAY_ROUTES", "routes.json"),
		DataverseURL:  strings.TrimRight(r.str("DATAVERSE_URL", ""), "/"),
		MaxAttempts:   r.nonNegativeInt("DVRELAY_MAX_ATTEMPTS", 0),
		IgnoreUserIDs: r.list("DVRELAY_IGNORE_USER_IDS"),

		LogLevel: strings.ToLower(r.str("DVRELAY_LOG_LEVEL", "info")),
	}
	if c.ServiceBusConnectionString != "" && c.ServiceBusNamespace != "" {
		r.fail("ServiceBusConnection", "set either a connection string or ServiceBusConnection__fullyQualifiedNamespace, not both")
	}
	if c.SecretHeader == "" {
		r.fail("DVRELAY_WEBHOOK_SECRET_HEADER", "must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		r.fail("DVRELAY_LOG_LEVEL", fmt.Sprintf("%q is not one of debug, info, warn, error", c.LogLevel))
	}
	if c.LockDuration < time.Second {
		r.fail("DVRELAY_LOCK_DURATION", "must be at least 1s")
	}
	return c, errors.Join(r.errs...)
}

type reader struct {
	lookup Lookup
	errs   []error
}

func (r *reader) fail(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, why))
}

func (r *reader) str(name, def string) string {
	if v, ok := r.lookup(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

func (r *reader) list(name string) []string {
	var out []string
	for _, part := range strings.Split(r.str(name, ""), ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, fmt.Sprintf("%q is not a positive duration (e.g. 10s, 2m)", v))
		return def
	}
	return d
}

func (r *reader) positiveInt64(name string, def int64) int64 {
	return r.intAtLeast(name, def, 1, "a positive whole number")
}

func (r *reader) positiveInt(name string, def int) int {
	return int(r.intAtLeast(name, int64(def), 1, "a positive whole number"))
}

func (r *reader) nonNegativeInt(name string, def int) int {
	return int(r.intAtLeast(name, int64(def), 0, "a whole number ≥ 0"))
}

// intAtLeast reads a whole number no smaller than least; what names the accepted values.
func (r *reader) intAtLeast(name string, def, least int64, what string) int64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < least {
		r.fail(name, fmt.Sprintf("%q is not %s", v, what))
		return def
	}
	return n
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, fmt.Sprintf("%q is not true or false", v))
		return def
	}
	return b
}
