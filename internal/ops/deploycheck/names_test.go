package deploycheck

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

// Settings the handler reads that infra/main.bicep deliberately does not write, and why.
var notWrittenByInfra = map[string]string{
	"ServiceBusConnection": "a connection string: the namespace infra creates has SAS off, and the handler refuses one next to ServiceBusConnection__fullyQualifiedNamespace",
	"DVRELAY_DATA_DIR":     "embedded queue only; infra always configures Service Bus, so the handler never opens it",
	"DVRELAY_CONSOLE_ADDR": "handler serve only (the embedded queue's support console); the Functions app serves no console",
	"DVRELAY_WORKER_CONCURRENCY": "the in-process worker loop of the embedded queue; on Service Bus the host's " +
		"extensions.serviceBus.maxConcurrentCalls (host.json) sets concurrency",
	"DVRELAY_LOCK_DURATION":        "embedded queue only; the Service Bus queue's lockDuration is in infra/main.bicep",
	"DVRELAY_MAX_DELIVERY_COUNT":   "embedded queue only; the Service Bus queue's maxDeliveryCount is in infra/main.bicep",
	"DVRELAY_DUPLICATE_WINDOW":     "embedded queue only; the Service Bus queue's duplicateDetectionHistoryTimeWindow is in infra/main.bicep",
	"DVRELAY_HISTORY_MAX_AGE":      "embedded queue only: the history behind the support console of handler serve",
	"DVRELAY_HISTORY_MAX_ENTRIES":  "embedded queue only: the history behind the support console of handler serve",
	"IDENTITY_ENDPOINT":            "set by the platform on every Function App",
	"FUNCTIONS_CUSTOMHANDLER_PORT": "set by the Functions host when it starts the handler",
	"FUNCTIONS_HTTPWORKER_PORT":    "set by older Functions hosts when they start the handler",
	"FUNCTIONS_APP_ROOT_PATH":      "set by the Functions host to the app root",
	"DVRELAY_MAX_CONNECTIONS":      "handler serve's own listener; in Azure the Functions host owns the listener",
	"DVRELAY_READ_HEADER_TIMEOUT":  "handler serve's own listener; in Azure the Functions host owns the listener",
	"DVRELAY_READ_TIMEOUT":         "handler serve's own listener; in Azure the Functions host owns the listener",
}

// Settings infra derives from the resources it creates rather than from a parameter.
var computedByInfra = map[string]string{
	"ServiceBusConnection__fullyQualifiedNamespace": "the namespace infra creates",
	"ServiceBusConnection__clientId":                "the identity infra creates",
}

// Settings only the Functions host reads (never the handler), and where they come from.
var hostOnlySettings = map[string]string{
	"FUNCTIONS_WORKER_RUNTIME":                  "the language worker; on Flex it is functionAppConfig.runtime",
	"AzureWebJobsStorage":                       "host storage (local.settings.json: Azurite)",
	"AzureWebJobsStorage__accountName":          "host storage by identity",
	"AzureWebJobsStorage__credential":           "host storage by identity",
	"AzureWebJobsStorage__clientId":             "host storage by identity",
	"APPLICATIONINSIGHTS_CONNECTION_STRING":     "host telemetry",
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "host telemetry signed with the identity",
	"ServiceBusConnection__credential":          "the trigger's identity-based connection",
}

// handlerSettings is every setting the handler binary reads: what config.Load asks for, the
// ${SETTING} references in the shipped routes file (config.Load reads the credential's and the
// custom handler port's settings too).
// Each is derived from the code or file that reads it, so this list cannot go stale.
func handlerSettings(t *testing.T, r repo) []string {
	t.Helper()
	names := config.SettingNames()
	routeRef := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}`)
	for _, m := range routeRef.FindAllStringSubmatch(string(r.read(t, "routes.json")), -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// settingNamesOf derives, from config.Load itself, which setting lands in which Config field:
// every setting is given its own name as its value.
func settingNamesOf(t *testing.T) config.Config {
	t.Helper()
	cfg, _ := config.Load(func(name string) (string, bool) { return name, true })
	return cfg
}

func defaults(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config.Load with nothing set: %v", err)
	}
	return cfg
}

func TestSettingNames_come_from_Load(t *testing.T) {
	names := config.SettingNames()
	fields := settingNamesOf(t)
	for _, want := range []string{fields.QueueName, fields.DeadLetterQueueName, fields.ServiceBusNamespace, fields.DataverseURL} {
		if !slices.Contains(names, want) {
			t.Errorf("config.SettingNames() = %q, missing %s, which Load reads", names, want)
		}
	}
}

func TestEvery_setting_the_handler_reads_is_written_by_infra_and_listed_in_docs_settings(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	documented := r.settingsTable(t)
	params := r.parametersJSON(t)

	for _, s := range handlerSettings(t, r) {
		if _, ok := documented[s]; !ok && s != "IDENTITY_ENDPOINT" {
			t.Errorf("%s: the settings table has no row for %s, which the handler reads", settingsDocPath, s)
		}
		if why, skip := notWrittenByInfra[s]; skip {
			if _, ok := b.settings[s]; ok {
				t.Errorf("%s: writes %s, which it should leave unset: %s", b.file, s, why)
			}
			continue
		}
		expr, ok := b.settings[s]
		if !ok {
			t.Errorf("%s: the app settings do not include %s, which the handler reads; "+
				"add a parameter for it (a setting added by hand in the portal is removed by the next deployment)", b.file, s)
			continue
		}
		if _, computed := computedByInfra[s]; computed {
			continue
		}
		// The value comes from a parameter that azd fills from the environment variable of the
		// same name, so `azd env set <SETTING> value` sets it.
		ps := b.paramsIn(expr)
		if len(ps) == 0 {
			t.Errorf("%s: app setting %s = %s comes from no parameter", b.file, s, expr)
			continue
		}
		mapped := false
		for _, p := range ps {
			if v, ok := params[p]; ok && azdVariable(v) == azdVariableFor(s) {
				mapped = true
			}
		}
		if !mapped {
			t.Errorf("infra/main.parameters.json: app setting %s comes from parameter %s, which must be set to \"${%s}\"",
				s, strings.Join(ps, " or "), azdVariableFor(s))
		}
	}
}

// azdVariableFor is the azd environment variable that sets a setting: its own name, except for
// the AZURE_* credential settings, which azd and CI pipelines already use for the deploying
// identity; those take a DVRELAY_ prefix so the deployer's identity never leaks into the app.
func azdVariableFor(setting string) string {
	if strings.HasPrefix(setting, "AZURE_") {
		return "DVRELAY_" + setting
	}
	return setting
}

var azdReference = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=[^}]*)?\}$`)

func azdVariable(value string) string {
	if m := azdReference.FindStringSubmatch(value); m != nil {
		return m[1]
	}
	return ""
}

func TestInfra_writes_no_setting_nobody_reads(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	known := handlerSettings(t, r)
	for s := range b.settings {
		if !slices.Contains(known, s) && hostOnlySettings[s] == "" {
			t.Errorf("%s: app setting %s is read neither by the handler nor by the Functions host", b.file, s)
		}
	}
}

func TestDocs_settings_table_lists_only_settings_that_are_read(t *testing.T) {
	r := openRepo(t)
	known := handlerSettings(t, r)
	var stale []string
	for s := range r.settingsTable(t) {
		if !slices.Contains(known, s) {
			stale = append(stale, s)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("%s: the settings table lists %q, which nothing reads", settingsDocPath, stale)
	}
}

func TestEvery_infra_parameter_can_be_set_from_azd_and_nothing_else_is_mapped(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	params := r.parametersJSON(t)
	for p := range b.params {
		if _, ok := params[p]; !ok {
			t.Errorf("infra/main.parameters.json: no entry for parameter %s of %s, so azd cannot set it", p, b.file)
		}
	}
	for p, v := range params {
		if _, ok := b.params[p]; !ok {
			t.Errorf("infra/main.parameters.json: %s is not a parameter of %s", p, b.file)
		}
		if azdVariable(v) == "" {
			t.Errorf("infra/main.parameters.json: %s = %q is not a ${VARIABLE} reference", p, v)
		}
	}
}

func TestQueue_names_agree_between_the_handler_infra_function_json_local_settings_and_docs(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	documented := r.settingsTable(t)
	local := r.localSettings(t)
	names := settingNamesOf(t)
	def := defaults(t)
	worker := r.functionWithTrigger(t, "serviceBusTrigger")
	trigger := worker.trigger(t)

	// The trigger reads the queue the handler publishes to: the same setting, %-resolved.
	if want := "%" + names.QueueName + "%"; trigger.QueueName != want {
		t.Errorf("%s: queueName %q, want %q (the setting the handler publishes to)", worker.file, trigger.QueueName, want)
	}
	// The trigger's connection is the prefix of the handler's identity-based namespace setting.
	if want := trigger.Connection + "__fullyQualifiedNamespace"; names.ServiceBusNamespace != want {
		t.Errorf("%s: connection %q, but the handler reads the namespace from %s", worker.file, trigger.Connection, names.ServiceBusNamespace)
	}
	if want := trigger.Connection; names.ServiceBusConnectionString != want {
		t.Errorf("%s: connection %q, but the handler reads the connection string from %s", worker.file, trigger.Connection, names.ServiceBusConnectionString)
	}
	if _, ok := b.settings[names.ServiceBusNamespace]; !ok {
		t.Errorf("%s: app settings lack %s, the trigger's and the handler's connection", b.file, names.ServiceBusNamespace)
	}

	for _, q := range []struct{ setting, value, resource string }{
		{names.QueueName, def.QueueName, "mainQueue"},
		{names.DeadLetterQueueName, def.DeadLetterQueueName, "deadLetterQueue"},
	} {
		ps := b.paramsIn(b.settings[q.setting])
		if len(ps) != 1 {
			t.Errorf("%s: app setting %s should come from one parameter, got %q", b.file, q.setting, ps)
			continue
		}
		if got := b.params[ps[0]].def; got != q.value {
			t.Errorf("%s: parameter %s defaults to %q, the handler's %s defaults to %q", b.file, ps[0], got, q.setting, q.value)
		}
		// The queue resource is named by the same parameter the setting carries.
		if got := property(t, b.file, b.resource(t, q.resource), "name"); got != ps[0] {
			t.Errorf("%s: resource %s is named %s, but app setting %s carries %s", b.file, q.resource, got, q.setting, ps[0])
		}
		if got := documented[q.setting].def; got != q.value {
			t.Errorf("%s: the settings table gives %s the default %q, the handler's is %q", settingsDocPath, q.setting, got, q.value)
		}
		if got, ok := local[q.setting]; ok && got != q.value {
			t.Errorf("local.settings.json: %s = %q, the handler's default and infra's queue are %q", q.setting, got, q.value)
		}
	}
	// The main queue's own dead letters go where the worker parks events.
	if got := property(t, b.file, b.resource(t, "mainQueue"), "forwardDeadLetteredMessagesTo"); got != "deadLetterQueue.name" {
		t.Errorf("%s: mainQueue forwards dead letters to %s, want deadLetterQueue.name", b.file, got)
	}
}

func TestThe_webhook_route_agrees_between_function_json_host_json_infra_README_and_the_handler(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	intake := r.functionWithTrigger(t, "httpTrigger")
	route := "/" + r.host(t).routePrefix() + "/" + intake.trigger(t).Route

	if out := b.outputs["WEBHOOK_URL"]; !strings.HasSuffix(strings.Trim(out, "'"), route) {
		t.Errorf("%s: output WEBHOOK_URL = %s, want it to end in %s (host.json routePrefix + %s route)", b.file, out, route, intake.file)
	}
	if out := b.outputs["FUNCTION_KEY_COMMAND"]; !strings.Contains(out, "--function-name "+intake.name+" ") {
		t.Errorf("%s: output FUNCTION_KEY_COMMAND = %s, want it to name --function-name %s", b.file, out, intake.name)
	}
	if !strings.Contains(string(r.read(t, "README.md")), route) {
		t.Errorf("README.md: never mentions the webhook route %s", route)
	}

	// The handler serves the forwarded request at the public route, and each function's
	// envelope at POST /<Function>, the path the host calls it on.
	sources := r.goSources(t)
	want := []string{`"` + route + `"`}
	for _, f := range r.functions(t) {
		want = append(want, `"POST /`+f.name+`"`)
	}
	for _, w := range want {
		found := false
		for _, src := range sources {
			if strings.Contains(src, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no Go source registers %s, which function.json and host.json define", w)
		}
	}
}

func TestLocal_settings_run_on_the_embedded_queue_without_placeholders(t *testing.T) {
	r := openRepo(t)
	local := r.localSettings(t)
	names := settingNamesOf(t)
	known := handlerSettings(t, r)
	functions := r.functions(t)
	disabled := func(fn string) bool { return strings.EqualFold(local["AzureWebJobs."+fn+".Disabled"], "true") }

	for k, v := range local {
		if strings.ContainsAny(v, "<>") {
			t.Errorf("local.settings.json: %s = %q looks like a placeholder; the first func start would use it as is", k, v)
		}
		isDisable := false
		for _, f := range functions {
			if k == "AzureWebJobs."+f.name+".Disabled" {
				isDisable = true
			}
		}
		if !isDisable && !slices.Contains(known, k) && hostOnlySettings[k] == "" {
			t.Errorf("local.settings.json: %s is read neither by the handler nor by the Functions host", k)
		}
	}
	if got := local["FUNCTIONS_WORKER_RUNTIME"]; got != "custom" {
		t.Errorf("local.settings.json: FUNCTIONS_WORKER_RUNTIME = %q, want custom", got)
	}
	serviceBus := local[names.ServiceBusConnectionString] != "" || local[names.ServiceBusNamespace] != ""
	if serviceBus {
		t.Errorf("local.settings.json: selects Service Bus (%s or %s set); the shipped file must run on the embedded queue",
			names.ServiceBusConnectionString, names.ServiceBusNamespace)
	}
	// Without Service Bus a Service Bus trigger cannot start; it is disabled instead, and the
	// handler's own worker loop drains the embedded queue.
	for _, f := range functions {
		if f.trigger(t).Type == "serviceBusTrigger" && !serviceBus && !disabled(f.name) {
			t.Errorf("local.settings.json: %s has a Service Bus trigger but no Service Bus is configured; set AzureWebJobs.%s.Disabled to true",
				f.name, f.name)
		}
	}
}
