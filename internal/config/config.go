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

// Every setting's default lives here, once. A package that also applies one to a zero field of its own
// options (so that a test can build it bare) takes it from these constants, which is why this
// package imports nothing of dvrelay's: everything else may import it.

// DefaultShutdownGrace is how long shutdown waits for in-flight requests and messages when
// DVRELAY_SHUTDOWN_GRACE is not set. The worker loop falls back to it too, so there is one value.
const DefaultShutdownGrace = 20 * time.Second

// DefaultUseSessions: a new deployment keeps each record's events in order (a session-enabled
// queue, SessionId = the record's order key). A queue's session mode is fixed when it is
// created, so `handler package` and the Bicep take it from this one setting.
const DefaultUseSessions = true

// Defaults of the intake (functions/webhook applies the first four to a zero webhook.Config).
// BENCHMARKS.md shows the measurements behind the bounds; docs/limits.md explains them to
// operators.
const (
	// DefaultMaxBodyBytes is DVRELAY_MAX_BODY_BYTES. Dataverse trims its payloads to 256 KB, so
	// 1 MiB leaves room for headers and encodings without inviting abuse.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultSecretHeader is DVRELAY_WEBHOOK_SECRET_HEADER: the header the step's HttpHeader
	// authentication is registered to send the secret in.
	DefaultSecretHeader = "x-dvrelay-secret"
	// DefaultPublishTimeout is DVRELAY_PUBLISH_TIMEOUT, the wait for the broker's ack. Dataverse
	// gives up after 60 s and retries only on 502/503/504, so a slow broker must turn into a
	// quick 503.
	DefaultPublishTimeout = 10 * time.Second
	// DefaultMaxInFlight is DVRELAY_MAX_INFLIGHT. BENCHMARKS.md shows how it was chosen: more
	// requests in flight let more events share each commit of the embedded queue, so throughput
	// grows with the bound, but less and less, while an admitted request's wait grows in
	// proportion (about bound ÷ throughput) and the excess is answered more slowly. On two cores
	// 64 is the largest bound under which a 2× overload still has its excess answered within
	// 100 ms.
	DefaultMaxInFlight = 64
	// DefaultMaxConnections is the most DVRELAY_MAX_CONNECTIONS defaults to (the file descriptor
	// limit may make it less, see limits.go): open client connections in serve mode.
	// The cap keeps idle and slow clients from using up file descriptors (the read timeouts cut
	// slow ones off); it must not be what meets an overload first. A cap that an overload reached
	// made it collapse: once the posts outstanding passed the cap, the excess waited in the
	// kernel's backlog, keep-alive was shed, every post paid a new connection and the CPU never
	// caught up. Far above the in-flight bound, the bound answers the excess 503 instead
	// (BENCHMARKS.md, "Twice capacity and the connection cap"). Go raises the process's
	// descriptor limit to its hard limit at start, which is far above this on current systems.
	DefaultMaxConnections = 8192
)

// Defaults of the embedded queue and the worker loop that drains it (internal/queue/local and
// internal/transport/consumer apply them to zero options).
const (
	// DefaultWorkerConcurrency is DVRELAY_WORKER_CONCURRENCY: messages processed at once.
	DefaultWorkerConcurrency = 16
	// DefaultLockDuration is DVRELAY_LOCK_DURATION. The loop renews a lock every half of it
	// while the message is processed, so it bounds only how long a message whose renewals
	// stopped stays hidden, while leaving a renewal time to go through.
	DefaultLockDuration = 30 * time.Second
	// DefaultMaxDeliveryCount is DVRELAY_MAX_DELIVERY_COUNT, Service Bus's own default: a
	// message whose worker crashed this many times is dead-lettered.
	DefaultMaxDeliveryCount = 10
	// DefaultDuplicateWindow is DVRELAY_DUPLICATE_WINDOW, Service Bus's own default for
	// duplicate detection: a webhook Dataverse retries is dropped within it.
	DefaultDuplicateWindow = 10 * time.Minute
	// DefaultHistoryMaxAge and DefaultHistoryMaxEntries are DVRELAY_HISTORY_MAX_AGE and
	// DVRELAY_HISTORY_MAX_ENTRIES, the bounds of the events' history the embedded queue keeps for
	// support: a week answers "what happened last week", and 200,000 entries (about 70,000 events
	// at three entries each) keep the file and the console's reads small (BENCHMARKS.md).
	DefaultHistoryMaxAge     = 7 * 24 * time.Hour
	DefaultHistoryMaxEntries = 200_000
)

// Default queue names, as infra/main.bicep creates them.
const (
	DefaultQueueName           = "dataverse-events"
	DefaultDeadLetterQueueName = "dataverse-events-deadletter"
)

// DefaultRoutesFile is DVRELAY_ROUTES: the routes file beside the binary, in the app root.
const DefaultRoutesFile = "routes.json"

// DefaultDataDir is DVRELAY_DATA_DIR: the embedded queue's directory, relative to where the
// handler runs.
const DefaultDataDir = ".dvrelay"

// The Service Bus connection settings, named as the Functions host reads them for the trigger's
// "connection": "ServiceBusConnection". internal/queue/servicebus names them in its errors, so an
// operator knows which app setting to fix.
const (
	ServiceBusConnectionSetting = "ServiceBusConnection"
	ServiceBusNamespaceSetting  = "ServiceBusConnection__fullyQualifiedNamespace"
	ServiceBusClientIDSetting   = "ServiceBusConnection__clientId"
)

// Port variables the Functions host sets for a custom handler. Current hosts set both; older
// ones set only the legacy name.
const (
	CustomHandlerPortEnv       = "FUNCTIONS_CUSTOMHANDLER_PORT"
	LegacyCustomHandlerPortEnv = "FUNCTIONS_HTTPWORKER_PORT"
)

// Config is every setting dvrelay reads. The table in docs/settings.md lists the same names.
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
	MaxBytesInFlight  int64 // limits.go
	MaxConnections    int
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration

	// Embedded queue and worker loop.
	DataDir           string
	WorkerConcurrency int
	LockDuration      time.Duration
	MaxDeliveryCount  int
	DuplicateWindow   time.Duration
	HistoryMaxAge     time.Duration
	HistoryMaxEntries int
	ShutdownGrace     time.Duration

	// Worker.
	// RoutesFile is DVRELAY_ROUTES as set, relative to the app root: what `handler package`
	// ships from a checkout.
	RoutesFile string
	// RoutesPath is RoutesFile resolved against FUNCTIONS_APP_ROOT_PATH when the host set it,
	// since standalone users may run the binary from elsewhere: what the worker reads.
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

// Environment is the process environment, the Lookup main gives Load. This package is the only
// place dvrelay reads environment variables (a test holds every other package to it).
func Environment(name string) (string, bool) { return os.LookupEnv(name) }

// InheritedEnvironment is the whole process environment, for a child process that must run in
// it: the go tool that `handler package` starts needs the operator's GOPATH, GOFLAGS, proxy and
// cache settings, which are none of dvrelay's.
func InheritedEnvironment() []string { return os.Environ() }

// GoRuntime says which of the Go runtime's own settings the environment sets. The runtime reads
// GOGC and GOMEMLIMIT itself; the handler asks only whether they are set, so that its tuning of
// the garbage collector never overrides an operator's. They are not dvrelay's settings, so Load
// (and SettingNames) leave them out.
type GoRuntime struct {
	GCPercentSet   bool // GOGC
	MemoryLimitSet bool // GOMEMLIMIT
}

// LoadGoRuntime reads which of the Go runtime's settings are set.
func LoadGoRuntime(lookup Lookup) GoRuntime {
	_, gc := lookup("GOGC")
	_, limit := lookup("GOMEMLIMIT")
	return GoRuntime{GCPercentSet: gc, MemoryLimitSet: limit}
}

// Load reads and checks every setting. The returned error joins one line per bad setting.
// Every setting is read on every call, whatever the others hold, so a recording Lookup sees
// them all.
func Load(lookup Lookup) (Config, error) {
	r := reader{lookup: lookup}
	c := Config{
		CustomHandlerPort: firstPort(r.str(CustomHandlerPortEnv, ""), r.str(LegacyCustomHandlerPortEnv, "")),

		ServiceBusConnectionString: r.str(ServiceBusConnectionSetting, ""),
		ServiceBusNamespace:        r.str(ServiceBusNamespaceSetting, ""),
		ServiceBusClientID:         r.str(ServiceBusClientIDSetting, ""),
		QueueName:                  r.str("ServiceBusQueueName", DefaultQueueName),
		DeadLetterQueueName:        r.str("DeadLetterQueueName", DefaultDeadLetterQueueName),

		MaxBodyBytes:   r.positiveInt64("DVRELAY_MAX_BODY_BYTES", DefaultMaxBodyBytes),
		WebhookSecrets: r.secrets("DVRELAY_WEBHOOK_SECRET"),
		SecretHeader:   r.str("DVRELAY_WEBHOOK_SECRET_HEADER", DefaultSecretHeader),
		PublishTimeout: r.duration("DVRELAY_PUBLISH_TIMEOUT", DefaultPublishTimeout),
		UseSessions:    useSessions(&r),
		AcceptStages:   r.stages("DVRELAY_ACCEPT_STAGES", "40"),

		MaxInFlight:       r.positiveInt("DVRELAY_MAX_INFLIGHT", DefaultMaxInFlight),
		ReadHeaderTimeout: r.duration("DVRELAY_READ_HEADER_TIMEOUT", 5*time.Second),
		ReadTimeout:       r.duration("DVRELAY_READ_TIMEOUT", 15*time.Second),

		DataDir:           r.str("DVRELAY_DATA_DIR", DefaultDataDir),
		WorkerConcurrency: r.positiveInt("DVRELAY_WORKER_CONCURRENCY", DefaultWorkerConcurrency),
		LockDuration:      r.duration("DVRELAY_LOCK_DURATION", DefaultLockDuration),
		MaxDeliveryCount:  r.positiveInt("DVRELAY_MAX_DELIVERY_COUNT", DefaultMaxDeliveryCount),
		DuplicateWindow:   r.duration("DVRELAY_DUPLICATE_WINDOW", DefaultDuplicateWindow),
		HistoryMaxAge:     r.duration("DVRELAY_HISTORY_MAX_AGE", DefaultHistoryMaxAge),
		HistoryMaxEntries: r.positiveInt("DVRELAY_HISTORY_MAX_ENTRIES", DefaultHistoryMaxEntries),
		ShutdownGrace:     r.duration("DVRELAY_SHUTDOWN_GRACE", DefaultShutdownGrace),

		RoutesFile:    r.str("DVRELAY_ROUTES", DefaultRoutesFile),
		DataverseURL:  r.dataverseURL("DATAVERSE_URL"),
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
	c.RoutesPath = resolveAgainst(r.str("FUNCTIONS_APP_ROOT_PATH", ""), c.RoutesFile)
	r.intakeBytes(&c)
	r.connections(&c, openFileLimit)
	if c.ServiceBusConnectionString != "" && c.ServiceBusNamespace != "" {
		r.fail(ServiceBusConnectionSetting, "set either a connection string or "+ServiceBusNamespaceSetting+", not both")
	}
	// The usual copy-paste mistakes (a URL, a connection string's endpoint, the bare namespace
	// name) would otherwise only show when the first message is sent.
	if ns := c.ServiceBusNamespace; ns != "" && (strings.Contains(ns, "://") || strings.ContainsAny(ns, "/;= ") || !strings.Contains(ns, ".")) {
		r.fail(ServiceBusNamespaceSetting, fmt.Sprintf("%q is not a host name (want e.g. contoso.servicebus.windows.net)", ns))
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
