package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
)

const (
	regSecret = "first-secret-value-9f8e"
	regKey    = "function-key-3c2b1a"
	regIntake = "https://dvrelay-app.azurewebsites.net/api/dataverse/webhook"
)

// registrationDouble is a Dataverse environment with the Update and Create messages on
// opportunity, and the deps that make the registration commands talk to it with a fixed token.
func registrationDouble(t *testing.T) (*dataversetest.Server, operatorDeps, *[]time.Duration) {
	t.Helper()
	srv := dataversetest.NewServer(t, append(dataversetest.RegistrationTables(),
		dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities", Columns: []string{"name", "estimatedvalue", "statuscode"}})...)
	srv.RequireToken("operator-token")
	for _, m := range []string{"Create", "Update"} {
		id := srv.Seed("sdkmessages", map[string]any{"name": m})
		srv.Seed("sdkmessagefilters", map[string]any{"primaryobjecttypecode": "opportunity", "_sdkmessageid_value": id})
	}
	var waits []time.Duration
	deps := operatorDeps{
		credential: func(dataverse.OperatorIdentity) (azcore.TokenCredential, error) {
			return dataversetest.StaticCredential{Token: "operator-token"}, nil
		},
		httpClient: srv.Client(),
		sleep:      func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
	}
	return srv, deps, &waits
}

func registrationEnv(srv *dataversetest.Server) func(string) (string, bool) {
	env := map[string]string{
		"DATAVERSE_URL":                 srv.URL(),
		"DVRELAY_WEBHOOK_SECRET":        regSecret + ", second-secret-being-retired",
		"DVRELAY_WEBHOOK_SECRET_HEADER": "x-dvrelay-secret",
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

type cliRun struct {
	code           int
	stdout, stderr string
}

func (e *cliEnv) register(args ...string) cliRun {
	var out, errOut bytes.Buffer
	code := registerCommand(context.Background(), args, e.lookup, &out, &errOut, e.deps)
	e.check(out.String() + errOut.String())
	return cliRun{code, out.String(), errOut.String()}
}

func (e *cliEnv) unregister(args ...string) cliRun {
	var out, errOut bytes.Buffer
	code := unregisterCommand(context.Background(), args, e.lookup, &out, &errOut, e.deps)
	e.check(out.String() + errOut.String())
	return cliRun{code, out.String(), errOut.String()}
}

func (e *cliEnv) registrations(args ...string) cliRun {
	var out, errOut bytes.Buffer
	code := registrationsCommand(context.Background(), args, e.lookup, &out, &errOut, e.deps)
	e.check(out.String() + errOut.String())
	return cliRun{code, out.String(), errOut.String()}
}

// cliEnv runs the registration commands against a double and fails the test if a secret ever
// reaches stdout or stderr.
type cliEnv struct {
	t      *testing.T
	srv    *dataversetest.Server
	deps   operatorDeps
	waits  *[]time.Duration
	lookup func(string) (string, bool)
}

func newCLIEnv(t *testing.T) *cliEnv {
	srv, deps, waits := registrationDouble(t)
	return &cliEnv{t: t, srv: srv, deps: deps, waits: waits, lookup: registrationEnv(srv)}
}

func (e *cliEnv) check(output string) {
	e.t.Helper()
	for _, s := range []string{regSecret, regKey, "second-secret-being-retired"} {
		if strings.Contains(output, s) {
			e.t.Errorf("output shows a secret (%s):\n%s", s, output)
		}
	}
}

var registerArgs = []string{
	"--function-url", regIntake + "?code=" + regKey, "--entity", "opportunity", "--message", "Update",
	"--attributes", "estimatedvalue,statuscode", "--image", "pre:name,estimatedvalue",
}

func TestRegisterCommand_dry_run_prints_the_records_and_changes_nothing(t *testing.T) {
	e := newCLIEnv(t)

	r := e.register(append(registerArgs, "--dry-run")...)

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if w := e.srv.Writes(); len(w) != 0 {
		t.Fatalf("dry run sent %v", w)
	}
	for _, want := range []string{
		`would create serviceendpoints "dvrelay"`, `"authvalue":"<redacted>"`, `"url":"` + regIntake + `"`,
		`would create sdkmessageprocessingsteps "dvrelay: Update of opportunity"`, `"filteringattributes":"estimatedvalue,statuscode"`,
		`"stage":40`, `"mode":1`, `would create sdkmessageprocessingstepimages "PreImage"`, "dry run: nothing was changed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
}

func TestRegisterCommand_registers_once_and_a_second_run_changes_nothing(t *testing.T) {
	e := newCLIEnv(t)

	first := e.register(registerArgs...)
	if first.code != 0 {
		t.Fatalf("first run: exit %d\n%s", first.code, first.stderr)
	}
	for _, set := range []string{"serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"} {
		if n := len(e.srv.Records(set)); n != 1 {
			t.Errorf("%s: %d records, want 1", set, n)
		}
	}
	// The secret in use is the first of DVRELAY_WEBHOOK_SECRET, in the configured header; the
	// function key beside it.
	ep := e.srv.Records("serviceendpoints")[0]
	if want := `<settings><setting name="x-dvrelay-secret" value="` + regSecret + `" /><setting name="x-functions-key" value="` + regKey + `" /></settings>`; ep["authvalue"] != want {
		t.Errorf("authvalue = %v, want %s", ep["authvalue"], want)
	}
	e.srv.ResetRequests()

	second := e.register(registerArgs...)
	if second.code != 0 {
		t.Fatalf("second run: exit %d\n%s", second.code, second.stderr)
	}
	if w := e.srv.Writes(); len(w) != 0 {
		t.Errorf("second run sent %v", w)
	}
	if strings.Count(second.stdout, "unchanged ") != 3 {
		t.Errorf("second run output:\n%s", second.stdout)
	}
}

func TestRegisterCommand_changed_attributes_patch_the_step(t *testing.T) {
	e := newCLIEnv(t)
	e.register(registerArgs...)
	e.srv.ResetRequests()

	args := append([]string(nil), registerArgs...)
	args[7] = "estimatedvalue"
	r := e.register(args...)

	w := e.srv.Writes()
	if r.code != 0 || len(w) != 1 || w[0].Method != "PATCH" || !strings.Contains(w[0].Path, "sdkmessageprocessingsteps(") {
		t.Fatalf("exit %d, writes %v; want one PATCH of the step\n%s", r.code, w, r.stderr)
	}
	if !strings.Contains(r.stdout, `updated sdkmessageprocessingsteps "dvrelay: Update of opportunity"`) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestRegisterCommand_waits_out_a_429_as_Dataverse_asks(t *testing.T) {
	e := newCLIEnv(t)
	e.srv.Throttle(1, 3*time.Second)

	r := e.register(registerArgs...)

	if r.code != 0 || len(*e.waits) != 1 || (*e.waits)[0] != 3*time.Second {
		t.Fatalf("exit %d after waits %v, want 0 after one 3s wait\n%s", r.code, *e.waits, r.stderr)
	}
	if !strings.Contains(r.stderr, "waiting 3s") {
		t.Errorf("stderr does not say it waits:\n%s", r.stderr)
	}
}

func TestRegisterCommand_missing_privilege_says_which_role_to_grant(t *testing.T) {
	e := newCLIEnv(t)
	e.srv.Fail(1, 403, "0x80040220", "Principal user (Id=1f2e) is missing prvReadSdkMessage privilege")

	r := e.register(registerArgs...)

	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"403", "missing prvReadSdkMessage privilege", "System Administrator"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestRegisterCommand_usage_errors_exit_2_with_what_to_do(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no flags", nil, nil, "--function-url, --entity, --message required"},
		{"unknown flag", []string{"--entitty", "x"}, nil, "flag provided but not defined"},
		{"bad image", append(append([]string(nil), registerArgs...), "--image", "middle"), nil, "say pre or post"},
		{"header auth without a secret", append(append([]string(nil), registerArgs...), "--auth", "header"), map[string]string{"DVRELAY_WEBHOOK_SECRET": ""}, "DVRELAY_WEBHOOK_SECRET is not set"},
		{"webhook key without a key", []string{"--function-url", regIntake, "--entity", "opportunity", "--message", "Update", "--auth", "webhookkey"}, nil, "--function-key"},
		{"no environment", registerArgs, map[string]string{"DATAVERSE_URL": ""}, "--dataverse-url is required"},
		{"message misspelt", []string{"--function-url", regIntake + "?code=" + regKey, "--entity", "opportunity", "--message", "update"}, nil, `Dataverse spells it "Update"`},
		{"argument", append(append([]string(nil), registerArgs...), "extra"), nil, `unexpected argument "extra"`},
		{"two different function keys", append(append([]string(nil), registerArgs...), "--auth", "header", "--function-key", "another-key"), nil, "--function-key and the ?code= of --function-url differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			base := e.lookup
			e.lookup = func(k string) (string, bool) {
				if v, ok := tt.env[k]; ok {
					return v, v != ""
				}
				return base(k)
			}
			r := e.register(tt.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if w := e.srv.Writes(); len(w) != 0 {
				t.Errorf("sent %v", w)
			}
		})
	}
}

func TestUnregisterCommand_removes_what_register_created(t *testing.T) {
	e := newCLIEnv(t)
	e.register(registerArgs...)

	if r := e.unregister(); r.code != 2 || !strings.Contains(r.stderr, "--name is required") {
		t.Fatalf("without --name: exit %d\n%s", r.code, r.stderr)
	}
	r := e.unregister("--name", "dvrelay")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, set := range []string{"serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"} {
		if n := len(e.srv.Records(set)); n != 0 {
			t.Errorf("%s: %d left", set, n)
		}
	}
	if strings.Count(r.stdout, "deleted ") != 3 {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if again := e.unregister("--name", "dvrelay"); again.code != 0 || !strings.Contains(again.stdout, "nothing to remove") {
		t.Errorf("second unregister: exit %d\n%s", again.code, again.stdout)
	}
}

func TestRegistrationsCommand_lists_the_steps_posting_to_the_intake(t *testing.T) {
	e := newCLIEnv(t)
	e.register(registerArgs...)

	r := e.registrations("--function-url", regIntake)

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"dvrelay: Update of opportunity", "Update", "opportunity", "40/async", "estimatedvalue,statuscode", "PreImage (pre: estimatedvalue,name)", "enabled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if none := e.registrations("--function-url", "https://elsewhere.example/api/hook"); none.code != 0 || !strings.Contains(none.stdout, "no webhook endpoint posts to") {
		t.Errorf("another URL: exit %d\n%s", none.code, none.stdout)
	}
}

func TestRegisterCommand_a_function_key_without_a_secret_selects_webhook_key_auth(t *testing.T) {
	e := newCLIEnv(t)
	base := e.lookup
	e.lookup = func(k string) (string, bool) {
		if k == "DVRELAY_WEBHOOK_SECRET" {
			return "", false
		}
		return base(k)
	}

	r := e.register("--function-url", regIntake, "--entity", "opportunity", "--message", "Update", "--attributes", "name", "--function-key", regKey)

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	ep := e.srv.Records("serviceendpoints")[0]
	if ep["authtype"] != json.Number("4") || ep["authvalue"] != regKey || ep["url"] != regIntake {
		t.Errorf("endpoint = authtype %v, url %v; want WebhookKey with the bare URL and the key as authvalue", ep["authtype"], ep["url"])
	}
}

func TestRegisterCommand_a_function_key_with_a_secret_goes_beside_it(t *testing.T) {
	// The intake checks the secret on every post: were the key to select webhook key auth,
	// Dataverse would stop sending the secret and every event would be refused.
	e := newCLIEnv(t)

	r := e.register("--function-url", regIntake, "--entity", "opportunity", "--message", "Update", "--attributes", "name", "--function-key", regKey)

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	ep := e.srv.Records("serviceendpoints")[0]
	if ep["authtype"] != json.Number("5") || !strings.Contains(fmt.Sprint(ep["authvalue"]), `name="x-dvrelay-secret"`) ||
		!strings.Contains(fmt.Sprint(ep["authvalue"]), `name="x-functions-key"`) {
		t.Errorf("endpoint = authtype %v; want HttpHeader sending the secret and the key", ep["authtype"])
	}
}

func TestRegisterCommand_header_auth_sends_the_function_key_as_x_functions_key_not_in_the_url(t *testing.T) {
	e := newCLIEnv(t)

	r := e.register("--function-url", regIntake, "--entity", "opportunity", "--message", "Update", "--attributes", "name",
		"--auth", "header", "--function-key", regKey)

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	ep := e.srv.Records("serviceendpoints")[0]
	want := `<settings><setting name="x-dvrelay-secret" value="` + regSecret + `" /><setting name="x-functions-key" value="` + regKey + `" /></settings>`
	if ep["authtype"] != json.Number("5") || ep["url"] != regIntake || ep["authvalue"] != want {
		t.Errorf("endpoint = authtype %v, url %v, authvalue %v; want HttpHeader, the bare URL and %s", ep["authtype"], ep["url"], ep["authvalue"], want)
	}
}

func TestRegisterCommand_a_mistyped_attribute_is_refused_with_the_closest_column(t *testing.T) {
	e := newCLIEnv(t)

	r := e.register("--function-url", regIntake+"?code="+regKey, "--entity", "opportunity", "--message", "Update", "--attributes", "estimatedvalu")

	if r.code != 2 || !strings.Contains(r.stderr, `--attributes: opportunity has no column "estimatedvalu"; did you mean "estimatedvalue"?`) {
		t.Errorf("exit %d, want 2 naming the column and the closest one\n%s", r.code, r.stderr)
	}
	if w := e.srv.Writes(); len(w) != 0 {
		t.Errorf("sent %v", w)
	}
}

func TestRegisterCommand_the_two_README_examples_do_not_undo_each_other(t *testing.T) {
	e := newCLIEnv(t)
	e.register(registerArgs...) // with --image pre:name,estimatedvalue

	r := e.register("--function-url", regIntake+"?code="+regKey, "--entity", "opportunity", "--message", "Update",
		"--attributes", "estimatedvalue,statuscode", "--image", "post")

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if n := len(e.srv.Records("sdkmessageprocessingstepimages")); n != 2 {
		t.Errorf("images = %d, want the pre image kept and the post image added", n)
	}
	if pruned := e.register("--function-url", regIntake+"?code="+regKey, "--entity", "opportunity", "--message", "Update",
		"--attributes", "estimatedvalue,statuscode", "--image", "post", "--prune"); pruned.code != 0 || len(e.srv.Records("sdkmessageprocessingstepimages")) != 1 {
		t.Errorf("--prune: exit %d, images %v\n%s", pruned.code, e.srv.Records("sdkmessageprocessingstepimages"), pruned.stderr)
	}
}

func TestRun_dispatches_the_registration_commands(t *testing.T) {
	for _, cmd := range []string{"register", "unregister", "registrations"} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{cmd, "-h"}, func(string) (string, bool) { return "", false }, &out, &errOut)
		if code != 0 || !strings.Contains(errOut.String(), "-dataverse-url") {
			t.Errorf("%s -h: exit %d\n%s", cmd, code, errOut.String())
		}
	}
}
