package config_test

import (
	"path/filepath"
	"slices"
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
	for key, value := range map[string]string{
		"ServiceBusConnection":                          "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x",
		"ServiceBusConnection__fullyQualifiedNamespace": "contoso.servicebus.windows.net",
	} {
		c, err := config.Load(lookupFrom(map[string]string{key: value}))
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

func TestLoad_refuses_a_webhook_secret_that_holds_no_secret(t *testing.T) {
	for _, v := range []string{",", ", ", "   ", " , ,"} {
		_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_WEBHOOK_SECRET": v}))
		if err == nil || !strings.Contains(err.Error(), "DVRELAY_WEBHOOK_SECRET:") {
			t.Errorf("DVRELAY_WEBHOOK_SECRET=%q: err = %v, want one naming the setting", v, err)
		}
	}
}

func TestLoad_reads_an_empty_webhook_secret_as_no_check(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{"DVRELAY_WEBHOOK_SECRET": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WebhookSecrets) != 0 {
		t.Errorf("secrets = %q, want none", c.WebhookSecrets)
	}
}

func TestLoad_prefers_the_custom_handler_port_then_the_legacy_one(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		want   string
		wantOK bool
	}{
		{"current", map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "40123", "FUNCTIONS_HTTPWORKER_PORT": "1"}, "40123", true},
		{"legacy only", map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "40124"}, "40124", true},
		{"current is not a port", map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "abc", "FUNCTIONS_HTTPWORKER_PORT": "40124"}, "40124", true},
		{"out of range", map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "70000"}, "", false},
		{"not under a host", map[string]string{}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Load(lookupFrom(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := c.CustomHandlerPort, c.CustomHandlerPort != ""; got != tc.want || ok != tc.wantOK {
				t.Errorf("Port = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestLoad_resolves_a_relative_routes_path_against_the_app_root(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "routes.json"},
		{map[string]string{"FUNCTIONS_APP_ROOT_PATH": "/home/site/wwwroot"}, filepath.Join("/home/site/wwwroot", "routes.json")},
		{map[string]string{"FUNCTIONS_APP_ROOT_PATH": "/home/site/wwwroot", "DVRELAY_ROUTES": "/etc/dvrelay/routes.json"}, "/etc/dvrelay/routes.json"},
	}
	for _, tc := range cases {
		c, err := config.Load(lookupFrom(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if c.RoutesPath != tc.want {
			t.Errorf("%v: RoutesPath = %q, want %q", tc.env, c.RoutesPath, tc.want)
		}
	}
}

func TestLoad_refuses_a_service_bus_namespace_that_is_not_a_host_name(t *testing.T) {
	for _, ns := range []string{"sb://contoso.servicebus.windows.net/", "contoso", "Endpoint=sb://contoso.servicebus.windows.net/"} {
		_, err := config.Load(lookupFrom(map[string]string{"ServiceBusConnection__fullyQualifiedNamespace": ns}))
		if err == nil || !strings.Contains(err.Error(), "ServiceBusConnection__fullyQualifiedNamespace: ") {
			t.Errorf("%q: err = %v, want one naming the setting", ns, err)
		}
	}
	if _, err := config.Load(lookupFrom(map[string]string{"ServiceBusConnection__fullyQualifiedNamespace": "contoso.servicebus.windows.net"})); err != nil {
		t.Errorf("a host name is refused: %v", err)
	}
}

func TestLoad_keeps_the_routes_file_as_set_for_packaging(t *testing.T) {
	// handler package ships the file from a checkout, so the app root must not be prefixed.
	c, err := config.Load(lookupFrom(map[string]string{"FUNCTIONS_APP_ROOT_PATH": "/home/site/wwwroot", "DVRELAY_ROUTES": "routes/prod.json"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RoutesFile != "routes/prod.json" || c.RoutesPath != filepath.Join("/home/site/wwwroot", "routes/prod.json") {
		t.Errorf("RoutesFile %q, RoutesPath %q", c.RoutesFile, c.RoutesPath)
	}
	if d, _ := config.Load(lookupFrom(nil)); d.RoutesFile != "routes.json" {
		t.Errorf("default RoutesFile %q, want routes.json", d.RoutesFile)
	}
}

func TestLoadGoRuntime_says_which_collector_settings_the_operator_set(t *testing.T) {
	got := config.LoadGoRuntime(lookupFrom(map[string]string{"GOGC": "off"}))
	if !got.GCPercentSet || got.MemoryLimitSet {
		t.Errorf("GOGC set, GOMEMLIMIT unset: got %+v", got)
	}
	if slices.Contains(config.SettingNames(), "GOGC") {
		t.Error("GOGC is Go's own setting, not dvrelay's: SettingNames must leave it out")
	}
}

func TestLoad_keeps_route_variables_for_the_routes_file(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{"DVRELAY_ERP_URL": "https://erp.example/api"}))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := c.RouteVariable("DVRELAY_ERP_URL"); !ok || v != "https://erp.example/api" {
		t.Errorf("RouteVariable(DVRELAY_ERP_URL) = %q, %v", v, ok)
	}
	if _, ok := c.RouteVariable("DVRELAY_CREDIT_URL"); ok {
		t.Error("an unset route variable reads as set")
	}
}

func TestLoad_reads_every_setting_whatever_the_others_hold(t *testing.T) {
	// A bad value early on must not hide later settings: each is read, and each is reported.
	read := func(env map[string]string) map[string]bool {
		seen := map[string]bool{}
		_, _ = config.Load(func(k string) (string, bool) { seen[k] = true; v, ok := env[k]; return v, ok })
		return seen
	}
	clean := read(nil)
	broken := read(map[string]string{
		"ServiceBusConnection":                          "Endpoint=sb://x/",
		"ServiceBusConnection__fullyQualifiedNamespace": "x",
		"DVRELAY_WEBHOOK_SECRET":                        ",",
		"FUNCTIONS_CUSTOMHANDLER_PORT":                  "7000",
		"DVRELAY_LOG_LEVEL":                             "loud",
	})
	for _, name := range []string{"FUNCTIONS_HTTPWORKER_PORT", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "FUNCTIONS_APP_ROOT_PATH", "DVRELAY_WEBHOOK_SECRET"} {
		if !clean[name] {
			t.Errorf("Load does not read %s", name)
		}
	}
	if len(broken) != len(clean) {
		t.Errorf("Load read %d settings with bad values, %d with none", len(broken), len(clean))
	}
}

func TestLoad_reads_the_dataverse_identity(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{
		"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s", "IDENTITY_ENDPOINT": "http://127.0.0.1:4141/msi/token",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AzureTenantID != "t" || c.AzureClientID != "c" || c.AzureClientSecret != "s" || c.IdentityEndpoint == "" {
		t.Errorf("identity = %q %q %q %q", c.AzureTenantID, c.AzureClientID, c.AzureClientSecret, c.IdentityEndpoint)
	}
}

func TestLoad_refuses_zero_max_attempts_naming_the_setting(t *testing.T) {
	// 0 used to mean "the default, 13" without a word: someone who wrote 0 meant something else.
	for _, v := range []string{"0", "-3", "many"} {
		_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_MAX_ATTEMPTS": v}))
		if err == nil || !strings.Contains(err.Error(), `DVRELAY_MAX_ATTEMPTS: "`+v+`" is not a positive whole number`) {
			t.Errorf("DVRELAY_MAX_ATTEMPTS=%s: error %v", v, err)
		}
	}
}

func TestLoad_reads_max_attempts_and_leaves_the_default_to_the_worker_when_unset(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{"DVRELAY_MAX_ATTEMPTS": "5"}))
	if err != nil || c.MaxAttempts != 5 {
		t.Errorf("DVRELAY_MAX_ATTEMPTS=5: %d, %v", c.MaxAttempts, err)
	}
	c, err = config.Load(lookupFrom(nil))
	if err != nil || c.MaxAttempts != 0 {
		t.Errorf("unset: MaxAttempts = %d (want 0: the worker's default), %v", c.MaxAttempts, err)
	}
}

func TestLoad_reads_the_log_format(t *testing.T) {
	cases := map[string]string{"": config.LogFormatAuto, "auto": config.LogFormatAuto, "TEXT": config.LogFormatText, " json ": config.LogFormatJSON}
	for v, want := range cases {
		env := map[string]string{}
		if v != "" {
			env["DVRELAY_LOG_FORMAT"] = v
		}
		c, err := config.Load(lookupFrom(env))
		if err != nil || c.LogFormat != want {
			t.Errorf("DVRELAY_LOG_FORMAT=%q: %q, %v; want %q", v, c.LogFormat, err, want)
		}
	}
	_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_LOG_FORMAT": "pretty"}))
	if err == nil || !strings.Contains(err.Error(), `DVRELAY_LOG_FORMAT: "pretty" is not one of text, json, auto`) {
		t.Errorf("DVRELAY_LOG_FORMAT=pretty: error %v", err)
	}
}

func TestLoad_accepts_PostOperation_events_only_by_default(t *testing.T) {
	c, err := config.Load(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AcceptStages) != 1 || c.AcceptStages[0] != 40 {
		t.Errorf("AcceptStages = %v, want [40]", c.AcceptStages)
	}
	c, err = config.Load(lookupFrom(map[string]string{"DVRELAY_ACCEPT_STAGES": " 40, 20 ,40"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AcceptStages) != 2 || c.AcceptStages[0] != 20 || c.AcceptStages[1] != 40 {
		t.Errorf("AcceptStages = %v, want [20 40]", c.AcceptStages)
	}
}

func TestLoad_names_DVRELAY_ACCEPT_STAGES_when_it_holds_no_stage_Dataverse_runs_steps_in(t *testing.T) {
	for _, v := range []string{"30", "post", "10,50", ",", "40.0"} {
		_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_ACCEPT_STAGES": v}))
		if err == nil || !strings.Contains(err.Error(), "DVRELAY_ACCEPT_STAGES: ") {
			t.Errorf("%q: error %v does not name DVRELAY_ACCEPT_STAGES", v, err)
		}
	}
}

func TestLoad_bounds_the_embedded_queues_history_by_age_and_count(t *testing.T) {
	d, err := config.Load(lookupFrom(nil))
	if err != nil || d.HistoryMaxAge != config.DefaultHistoryMaxAge || d.HistoryMaxEntries != config.DefaultHistoryMaxEntries {
		t.Fatalf("defaults: age %v, entries %d, err %v", d.HistoryMaxAge, d.HistoryMaxEntries, err)
	}
	c, err := config.Load(lookupFrom(map[string]string{"DVRELAY_HISTORY_MAX_AGE": "48h", "DVRELAY_HISTORY_MAX_ENTRIES": "5000"}))
	if err != nil || c.HistoryMaxAge != 48*time.Hour || c.HistoryMaxEntries != 5000 {
		t.Fatalf("set: age %v, entries %d, err %v", c.HistoryMaxAge, c.HistoryMaxEntries, err)
	}
	_, err = config.Load(lookupFrom(map[string]string{"DVRELAY_HISTORY_MAX_AGE": "a week", "DVRELAY_HISTORY_MAX_ENTRIES": "0"}))
	if err == nil || !strings.Contains(err.Error(), "DVRELAY_HISTORY_MAX_AGE") || !strings.Contains(err.Error(), "DVRELAY_HISTORY_MAX_ENTRIES") {
		t.Fatalf("bad values: err %v, want both settings named", err)
	}
}
