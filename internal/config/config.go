// Package config reads dvrelay's settings from the environment once, at start, into one struct.
// Every problem is reported together, each naming its setting, so a bad deployment fails fast
// with one clear message instead of one error per restart.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
)

// Log formats (DVRELAY_LOG_FORMAT).
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
	LogFormatAuto = "auto" // text on a terminal, JSON otherwise
)

// Backend names, as shown in logs and in /api/health.
const (
	BackendServiceBus = "servicebus"
	BackendEmbedded   = "embedded"
)

// DefaultShutdownGrace is how long shutdown waits for in-flight requests and messages when
// DVRELAY_SHUTDOWN_GRACE is not set. The worker loop falls back to it too, so there is one value.
const DefaultShutdownGrace = 20 * time.Second

// DefaultUseSessions: a new deployment keeps each record's events in order (a session-enabled
// queue, SessionId = the record's order key). A queue's session mode is fixed when it is
// created, so `handler package` and the Bicep take it from this one setting.
const DefaultUseSessions = true

// Defaults of the intake's bounds. BENCHMARKS.md shows the measurements behind them; the README
// explains them to operators.
const (
	// DefaultMaxConnections is DVRELAY_MAX_CONNECTIONS: open client connections in serve mode.
	// The cap keeps idle and slow clients from using up file descriptors (the read timeouts cut
	// slow ones off); it must not be what meets an overload first. At 512, twice the intake's
	// capacity collapsed in two of three runs: once the posts outstanding passed the cap, the
	// excess waited in the kernel's backlog, keep-alive was shed, every post paid a new
	// connection and the CPU never caught up. At 8,192 none of three did, and the in-flight
	// bound answered the excess 503 (BENCHMARKS.md). Go raises the process's descriptor limit
	// to its hard limit at start, which is far above this on current systems.
	DefaultMaxConnections = 8192
)

// Port variables the Functions host sets for a custom handler. Current hosts set both; older
// ones set only the legacy name.
const (
	CustomHandlerPortEnv       = "FUNCTIONS_CUSTOMHANDLER_PORT"
	LegacyCustomHandlerPortEnv = "FUNCTIONS_HTTPWORKER_PORT"
)

// Config is every setting dvrelay reads. The README's settings table lists the same names.
type Config struct {
	// CustomHandlerPort is the port the Functions host expects the handler on; empty when the
	// process was not started by a host (neither port variable holds a port number).
	CustomHandlerPort string

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
	// AcceptStages are the pipeline stages (10, 20, 40) whose events the intake queues, sorted;
	// an event from another stage is answered without being queued (see functions/webhook).
	AcceptStages []int

	// The intake's bounds: requests in flight (503 past it), open connections (serve mode), and
	// how long a client may take to send its headers and its whole request.
	MaxInFlight       int
	MaxConnections    int
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration

	// Embedded queue and worker loop.
	DataDir           string
	WorkerConcurrency int
	LockDuration      time.Duration
	MaxDeliveryCount  int
	DuplicateWindow   time.Duration
	ShutdownGrace     time.Duration

	// Worker.
	// RoutesPath is DVRELAY_ROUTES; a relative path is resolved against FUNCTIONS_APP_ROOT_PATH
	// when the host set it, since standalone users may run the binary from elsewhere.
	RoutesPath   string
	DataverseURL string
	MaxAttempts  int // unset: 0, the worker's default (retries spanning at least six hours)
	// RetryDelay is the back-off after an event's first transient failure; it doubles per
	// attempt up to an hour. Shorter only in tests.
	RetryDelay    time.Duration
	IgnoreUserIDs []string

	// The Dataverse identity: an app registration when all three AZURE_* values are set, else a
	// managed identity where IDENTITY_ENDPOINT is set (Functions, App Service).
	AzureTenantID     string // AZURE_TENANT_ID
	AzureClientID     string // AZURE_CLIENT_ID
	AzureClientSecret string // AZURE_CLIENT_SECRET
	IdentityEndpoint  string // IDENTITY_ENDPOINT

	LogLevel string
	// LogFormat is text, json or auto: text when stdout is a terminal (a person reading), JSON
	// lines otherwise (a log pipeline).
	LogFormat string

	// routeVariables answers ${NAME} references in the routes file. Their names are the routes
	// file's choice, so they cannot be read up front with the settings above.
	routeVariables Lookup
}

// RouteVariable reads a variable a routes file references as ${NAME}. The worker expands every
// reference once, when it loads the routes at start.
func (c Config) RouteVariable(name string) (string, bool) {
	if c.routeVariables == nil {
		return "", false
	}
	return c.routeVariables(name)
}

// Backend says which queue backend the settings select: Service Bus when a connection is
// configured, the embedded queue otherwise. The choice follows configuration alone, in both modes.
func (c Config) Backend() string {
	if c.ServiceBusConnectionString != "" || c.ServiceBusNamespace != "" {
		return BackendServiceBus
	}
	return BackendEmbedded
}

// Lookup reads one setting; Environment in production, a map in tests.
type Lookup func(name string) (string, bool)

// Environment is the process environment, the Lookup main gives Load. It is the only place
// dvrelay reads environment variables.
func Environment(name string) (string, bool) { return os.LookupEnv(name) }

// Load reads and checks every setting. The returned error joins one line per bad setting.
// Every setting is read on every call, whatever the others hold, so a recording Lookup sees
// them all.
func Load(lookup Lookup) (Config, error) {
	r := reader{lookup: lookup}
	c := Config{
		CustomHandlerPort: firstPort(r.str(CustomHandlerPortEnv, ""), r.str(LegacyCustomHandlerPortEnv, "")),

		ServiceBusConnectionString: r.str("ServiceBusConnection", ""),
		ServiceBusNamespace:        r.str("ServiceBusConnection__fullyQualifiedNamespace", ""),
		ServiceBusClientID:         r.str("ServiceBusConnection__clientId", ""),
		QueueName:                  r.str("ServiceBusQueueName", "dataverse-events"),
		DeadLetterQueueName:        r.str("DeadLetterQueueName", "dataverse-events-deadletter"),

		MaxBodyBytes:   r.positiveInt64("DVRELAY_MAX_BODY_BYTES", 1<<20),
		WebhookSecrets: r.secrets("DVRELAY_WEBHOOK_SECRET"),
		SecretHeader:   r.str("DVRELAY_WEBHOOK_SECRET_HEADER", "x-dvrelay-secret"),
		PublishTimeout: r.duration("DVRELAY_PUBLISH_TIMEOUT", 10*time.Second),
		UseSessions:    useSessions(&r),
		AcceptStages:   r.stages("DVRELAY_ACCEPT_STAGES", "40"),

		MaxInFlight:       r.positiveInt("DVRELAY_MAX_INFLIGHT", webhook.DefaultMaxInFlight),
		MaxConnections:    r.positiveInt("DVRELAY_MAX_CONNECTIONS", DefaultMaxConnections),
		ReadHeaderTimeout: r.duration("DVRELAY_READ_HEADER_TIMEOUT", 5*time.Second),
		ReadTimeout:       r.duration("DVRELAY_READ_TIMEOUT", 15*time.Second),

		DataDir:           r.str("DVRELAY_DATA_DIR", ".dvrelay"),
		WorkerConcurrency: r.positiveInt("DVRELAY_WORKER_CONCURRENCY", 16),
		LockDuration:      r.duration("DVRELAY_LOCK_DURATION", 30*time.Second),
		MaxDeliveryCount:  r.positiveInt("DVRELAY_MAX_DELIVERY_COUNT", 10),
		DuplicateWindow:   r.duration("DVRELAY_DUPLICATE_WINDOW", 10*time.Minute),
		ShutdownGrace:     r.duration("DVRELAY_SHUTDOWN_GRACE", DefaultShutdownGrace),

		RoutesPath:    resolveAgainst(r.str("FUNCTIONS_APP_ROOT_PATH", ""), r.str("DVRELAY_ROUTES", "routes.json")),
		DataverseURL:  strings.TrimRight(r.str("DATAVERSE_URL", ""), "/"),
		MaxAttempts:   r.maxAttempts("DVRELAY_MAX_ATTEMPTS"),
		RetryDelay:    r.duration("DVRELAY_RETRY_DELAY", 30*time.Second),
		IgnoreUserIDs: r.list("DVRELAY_IGNORE_USER_IDS"),

		AzureTenantID:     r.str("AZURE_TENANT_ID", ""),
		AzureClientID:     r.str("AZURE_CLIENT_ID", ""),
		AzureClientSecret: r.str("AZURE_CLIENT_SECRET", ""),
		IdentityEndpoint:  r.str("IDENTITY_ENDPOINT", ""),

		LogLevel:  strings.ToLower(r.str("DVRELAY_LOG_LEVEL", "info")),
		LogFormat: strings.ToLower(r.str("DVRELAY_LOG_FORMAT", LogFormatAuto)),

		routeVariables: lookup,
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
	switch c.LogFormat {
	case LogFormatText, LogFormatJSON, LogFormatAuto:
	default:
		r.fail("DVRELAY_LOG_FORMAT", fmt.Sprintf("%q is not one of text, json, auto", c.LogFormat))
	}
	if c.MaxConnections <= c.MaxInFlight {
		r.fail("DVRELAY_MAX_CONNECTIONS", fmt.Sprintf("must be above DVRELAY_MAX_INFLIGHT (%d): callers past the in-flight bound need a connection to be told 503", c.MaxInFlight))
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
	return splitList(r.str(name, ""))
}

// secrets reads a comma-separated list of secrets. Empty turns the check off; a value that is
// set but holds no secret (only commas or blanks) is refused, since the operator meant to turn
// the check on, and every check made on this setting must see the same answer.
func (r *reader) secrets(name string) []string {
	raw, _ := r.lookup(name)
	out := splitList(raw)
	if raw != "" && len(out) == 0 {
		r.fail(name, "is set but holds no secret: give one or more comma-separated secrets, or leave it empty to turn the check off")
	}
	return out
}

func splitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// firstPort returns the first value that is a port number. A value that is not one is passed
// over rather than refused: only a Functions host sets these, and it always sets a number.
func firstPort(values ...string) string {
	for _, v := range values {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 65535 {
			return v
		}
	}
	return ""
}

// resolveAgainst joins a relative path to root, when root is set.
func resolveAgainst(root, path string) string {
	if root == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
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

// maxAttempts reads a positive number of attempts. Unset gives 0, which the worker reads as
// its default; a 0 written out is refused rather than read the same way, since whoever wrote
// it meant something else (no retries, or none at all).
func (r *reader) maxAttempts(name string) int {
	return int(r.intAtLeast(name, 0, 1, "a positive whole number (leave it unset for the default: retries spanning about six hours)"))
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

// stages reads a comma-separated list of Dataverse pipeline stages: 10 PreValidation, 20
// PreOperation, 40 PostOperation (30, the main operation, runs no steps). A bad value is
// reported and the default used, so the other settings are still checked.
func (r *reader) stages(name, def string) []int {
	v := r.str(name, def)
	out, ok := parseStages(v)
	if !ok {
		r.fail(name, fmt.Sprintf("%q is not a list of the stages 10, 20 and 40 (e.g. 40, or 20,40)", v))
		out, _ = parseStages(def)
	}
	return out
}

// parseStages reads "20, 40" as [20 40], sorted and without repeats; ok is false for anything
// but a non-empty list of 10, 20 and 40.
func parseStages(v string) (stages []int, ok bool) {
	for _, part := range splitList(v) {
		n, err := strconv.Atoi(part)
		if err != nil || (n != 10 && n != 20 && n != 40) {
			return nil, false
		}
		if !slices.Contains(stages, n) {
			stages = append(stages, n)
		}
	}
	slices.Sort(stages)
	return stages, len(stages) > 0
}

// UseSessions reads DVRELAY_USE_SESSIONS alone, as Load does, for a tool that must agree with
// the handler on it without needing every other setting (`handler package`).
func UseSessions(lookup Lookup) (bool, error) {
	r := reader{lookup: lookup}
	v := useSessions(&r)
	return v, errors.Join(r.errs...)
}

func useSessions(r *reader) bool { return r.boolean("DVRELAY_USE_SESSIONS", DefaultUseSessions) }

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
