package registration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
	"github.com/dvrelay/dvrelay/internal/ops/registration"
)

const (
	secret      = "s3cr3t-webhook-value"
	functionKey = "fn-key-0123456789"
	intakeURL   = "https://dvrelay-app.azurewebsites.net/api/dataverse/webhook"
)

// env is an environment double seeded with the messages and filters Dataverse ships, and a
// Registrar talking to it through the real Web API client.
type env struct {
	srv   *dataversetest.Server
	reg   *registration.Registrar
	waits []time.Duration
	msgs  map[string]string // message name → sdkmessageid
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tables := append(dataversetest.RegistrationTables(),
		dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities", Columns: []string{"name", "estimatedvalue", "statuscode", "closeprobability"}},
		dataversetest.Table{LogicalName: "account", EntitySet: "accounts", Columns: []string{"name", "accountnumber"}})
	e := &env{srv: dataversetest.NewServer(t, tables...), msgs: map[string]string{}}
	e.srv.RequireToken("registration-token")
	for _, m := range []string{"Create", "Update", "Delete", "SetState", "Assign"} {
		e.msgs[m] = e.srv.Seed("sdkmessages", map[string]any{"name": m})
		for _, entity := range []string{"opportunity", "account"} {
			e.srv.Seed("sdkmessagefilters", map[string]any{"primaryobjecttypecode": entity, "_sdkmessageid_value": e.msgs[m]})
		}
	}
	client, err := dataverse.NewClient(e.srv.URL(), dataversetest.StaticCredential{Token: "registration-token"}, &dataverse.Options{HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = registration.New(client, registration.Options{
		Sleep: func(_ context.Context, d time.Duration) error { e.waits = append(e.waits, d); return nil },
	})
	return e
}

func headerSpec() registration.Spec {
	return registration.Spec{
		Name:         "dvrelay",
		FunctionURL:  intakeURL + "?code=" + functionKey,
		Entity:       "opportunity",
		Message:      "Update",
		Attributes:   []string{"statuscode", "EstimatedValue"},
		Images:       []registration.Image{{Type: registration.PreImage, Attributes: []string{"name", "estimatedvalue"}}},
		Rank:         1,
		Auth:         registration.AuthHeader,
		SecretHeader: "x-dvrelay-secret",
		Secret:       secret,
	}
}

func (e *env) register(t *testing.T, spec registration.Spec, dryRun bool) []registration.Change {
	t.Helper()
	changes, err := e.reg.Register(context.Background(), spec, dryRun)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return changes
}

func actions(changes []registration.Change) string {
	var s []string
	for _, c := range changes {
		s = append(s, string(c.Action)+" "+c.EntitySet)
	}
	return strings.Join(s, ", ")
}

func printed(changes []registration.Change) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintln(&b, c)
	}
	return b.String()
}

func TestRegister_dry_run_reports_every_record_and_writes_nothing(t *testing.T) {
	e := newEnv(t)

	changes := e.register(t, headerSpec(), true)

	if w := e.srv.Writes(); len(w) != 0 {
		t.Fatalf("a dry run sent %v", w)
	}
	want := "create serviceendpoints, create sdkmessageprocessingsteps, create sdkmessageprocessingstepimages"
	if got := actions(changes); got != want {
		t.Errorf("changes = %s, want %s", got, want)
	}
	out := printed(changes)
	if !strings.Contains(out, `would create serviceendpoints "dvrelay"`) || !strings.Contains(out, `"authvalue":"<redacted>"`) {
		t.Errorf("dry run report does not show the endpoint with a redacted authvalue:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, functionKey) {
		t.Errorf("dry run report shows a secret:\n%s", out)
	}
}

func TestRegister_first_run_creates_endpoint_step_and_image_once(t *testing.T) {
	e := newEnv(t)

	changes := e.register(t, headerSpec(), false)

	if got := actions(changes); got != "create serviceendpoints, create sdkmessageprocessingsteps, create sdkmessageprocessingstepimages" {
		t.Fatalf("changes = %s", got)
	}
	var posts int
	for _, w := range e.srv.Writes() {
		if w.Method != http.MethodPost {
			t.Errorf("first run sent %s", w)
		}
		posts++
	}
	if posts != 3 {
		t.Errorf("POSTs = %d, want 3", posts)
	}

	eps := e.srv.Records("serviceendpoints")
	if len(eps) != 1 {
		t.Fatalf("endpoints = %v", eps)
	}
	ep := eps[0]
	// The HttpHeader settings list as Dataverse documents it, the function key beside the secret.
	wantAuth := `<settings><setting name="x-dvrelay-secret" value="` + secret + `" />` +
		`<setting name="x-functions-key" value="` + functionKey + `" /></settings>`
	for k, want := range map[string]any{
		"name": "dvrelay", "contract": json.Number("8"), "authtype": json.Number("5"), "messageformat": json.Number("2"),
		"url": intakeURL, "authvalue": wantAuth,
	} {
		if ep[k] != want {
			t.Errorf("endpoint %s = %v, want %v", k, ep[k], want)
		}
	}

	steps := e.srv.Records("sdkmessageprocessingsteps")
	if len(steps) != 1 {
		t.Fatalf("steps = %v", steps)
	}
	st := steps[0]
	for k, want := range map[string]any{
		"name": "dvrelay: Update of opportunity", "stage": json.Number("40"), "mode": json.Number("1"),
		"rank": json.Number("1"), "supporteddeployment": json.Number("0"), "asyncautodelete": true,
		"filteringattributes": "estimatedvalue,statuscode",
		"_eventhandler_value": ep["serviceendpointid"], "_sdkmessageid_value": e.msgs["Update"],
	} {
		if st[k] != want {
			t.Errorf("step %s = %v, want %v", k, st[k], want)
		}
	}
	if st["_sdkmessagefilterid_value"] == nil {
		t.Error("step is not bound to a message filter")
	}

	imgs := e.srv.Records("sdkmessageprocessingstepimages")
	if len(imgs) != 1 {
		t.Fatalf("images = %v", imgs)
	}
	for k, want := range map[string]any{
		"entityalias": "PreImage", "imagetype": json.Number("0"), "messagepropertyname": "Target",
		"attributes": "estimatedvalue,name", "_sdkmessageprocessingstepid_value": st["sdkmessageprocessingstepid"],
	} {
		if imgs[0][k] != want {
			t.Errorf("image %s = %v, want %v", k, imgs[0][k], want)
		}
	}
}

func TestRegister_second_run_sends_no_create_and_no_update(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	e.srv.ResetRequests()

	changes := e.register(t, headerSpec(), false)

	if w := e.srv.Writes(); len(w) != 0 {
		t.Fatalf("second run sent %v", w)
	}
	for _, c := range changes {
		if c.Action != registration.Unchanged {
			t.Errorf("second run: %v", c)
		}
	}
}

func TestRegister_changed_attributes_update_the_step_in_place(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	stepID := e.srv.Records("sdkmessageprocessingsteps")[0]["sdkmessageprocessingstepid"]
	e.srv.ResetRequests()

	spec := headerSpec()
	spec.Attributes = []string{"estimatedvalue", "closeprobability"}
	changes := e.register(t, spec, false)

	w := e.srv.Writes()
	if len(w) != 1 || w[0].Method != http.MethodPatch || w[0].Path != "/api/data/v9.2/sdkmessageprocessingsteps("+fmt.Sprint(stepID)+")" {
		t.Fatalf("writes = %v, want one PATCH of the step", w)
	}
	var body map[string]any
	_ = json.Unmarshal(w[0].Body, &body)
	if len(body) != 1 || body["filteringattributes"] != "closeprobability,estimatedvalue" {
		t.Errorf("PATCH body = %v, want only the new filtering attributes", body)
	}
	steps := e.srv.Records("sdkmessageprocessingsteps")
	if len(steps) != 1 || steps[0]["filteringattributes"] != "closeprobability,estimatedvalue" {
		t.Errorf("steps = %v", steps)
	}
	if got := actions(changes); got != "unchanged serviceendpoints, update sdkmessageprocessingsteps, unchanged sdkmessageprocessingstepimages" {
		t.Errorf("changes = %s", got)
	}
}

func TestRegister_changed_images_with_prune_update_create_and_delete_only_what_differs(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	e.srv.ResetRequests()

	spec := headerSpec()
	spec.Images = []registration.Image{{Type: registration.PostImage}}
	spec.Prune = true
	changes := e.register(t, spec, false)

	if got := actions(changes); got != "unchanged serviceendpoints, unchanged sdkmessageprocessingsteps, delete sdkmessageprocessingstepimages, create sdkmessageprocessingstepimages" {
		t.Fatalf("changes = %s", got)
	}
	imgs := e.srv.Records("sdkmessageprocessingstepimages")
	if len(imgs) != 1 || imgs[0]["entityalias"] != "PostImage" || imgs[0]["imagetype"] != json.Number("1") {
		t.Fatalf("images = %v, want the post image alone", imgs)
	}
	if _, has := imgs[0]["attributes"]; has {
		t.Errorf("post image for all columns sent attributes %v; Dataverse rejects an empty list", imgs[0]["attributes"])
	}
}

func TestRegister_header_auth_never_sends_the_function_key_in_the_url(t *testing.T) {
	for name, edit := range map[string]func(*registration.Spec){
		"key as ?code=":         func(*registration.Spec) {},
		"key as --function-key": func(s *registration.Spec) { s.FunctionURL, s.FunctionKey = intakeURL, functionKey },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			spec := headerSpec()
			edit(&spec)
			e.register(t, spec, false)

			for _, w := range e.srv.Writes() {
				var body map[string]any
				_ = json.Unmarshal(w.Body, &body)
				if strings.Contains(fmt.Sprint(body["url"]), functionKey) {
					t.Errorf("%s sent url %v", w, body["url"])
				}
			}
			ep := e.srv.Records("serviceendpoints")[0]
			if ep["url"] != intakeURL {
				t.Errorf("url = %v, want %s", ep["url"], intakeURL)
			}
			if !strings.Contains(fmt.Sprint(ep["authvalue"]), `<setting name="x-functions-key" value="`+functionKey+`" />`) {
				t.Errorf("authvalue = %v, want the key as an x-functions-key setting", ep["authvalue"])
			}
		})
	}
}

func TestRegister_moves_a_function_key_out_of_an_existing_endpoints_url(t *testing.T) {
	e := newEnv(t)
	// As an earlier version registered it: the key in the readable url column.
	id := e.srv.Seed("serviceendpoints", map[string]any{
		"name": "dvrelay", "contract": 8, "url": intakeURL + "?code=" + functionKey, "authtype": 5,
		"messageformat": 2, "userclaim": 1, "description": "dvrelay intake; managed by handler register",
		"isauthvalueset": true, "authvalue": `<settings><setting name="x-dvrelay-secret" value="` + secret + `" /></settings>`,
	})
	spec := headerSpec()
	spec.FunctionURL = intakeURL // the operator no longer passes the key

	changes := e.register(t, spec, false)

	ep, _ := e.srv.Record("serviceendpoints", id)
	if ep["url"] != intakeURL {
		t.Errorf("url = %v, want the key taken out", ep["url"])
	}
	want := `<settings><setting name="x-dvrelay-secret" value="` + secret + `" /><setting name="x-functions-key" value="` + functionKey + `" /></settings>`
	if ep["authvalue"] != want {
		t.Errorf("authvalue = %v, want %s", ep["authvalue"], want)
	}
	if out := printed(changes); strings.Contains(out, functionKey) || !strings.Contains(out, `updated serviceendpoints "dvrelay"`) {
		t.Errorf("report:\n%s", out)
	}
}

func TestRegister_webhook_key_moves_the_key_from_the_url_to_authvalue(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	e.srv.ResetRequests()

	spec := headerSpec()
	spec.Auth = registration.AuthWebhookKey
	changes := e.register(t, spec, false)

	ep := e.srv.Records("serviceendpoints")
	if len(ep) != 1 {
		t.Fatalf("endpoints = %v, want the same one updated", ep)
	}
	if ep[0]["url"] != intakeURL || ep[0]["authtype"] != json.Number("4") || ep[0]["authvalue"] != functionKey {
		t.Errorf("endpoint = url %v, authtype %v, authvalue %v; want the bare URL, 4 and the function key", ep[0]["url"], ep[0]["authtype"], ep[0]["authvalue"])
	}
	if strings.Contains(printed(changes), functionKey) {
		t.Errorf("report shows the function key:\n%s", printed(changes))
	}
}

func TestRegister_rotate_secret_writes_the_secret_Dataverse_cannot_show(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	e.srv.ResetRequests()

	spec := headerSpec()
	spec.Secret = "a-new-secret"
	e.register(t, spec, false)
	if w := e.srv.Writes(); len(w) != 0 {
		t.Fatalf("without --rotate-secret a rerun sent %v", w)
	}

	spec.RotateSecret = true
	changes := e.register(t, spec, false)
	if got := e.srv.Records("serviceendpoints")[0]["authvalue"]; !strings.Contains(fmt.Sprint(got), `value="a-new-secret"`) {
		t.Errorf("authvalue = %v, want the new secret", got)
	}
	if strings.Contains(printed(changes), "a-new-secret") {
		t.Errorf("report shows the secret:\n%s", printed(changes))
	}
}

func TestRegister_honours_429_Retry_After(t *testing.T) {
	e := newEnv(t)
	e.srv.Throttle(2, 7*time.Second)

	e.register(t, headerSpec(), false)

	if !slices.Equal(e.waits, []time.Duration{7 * time.Second, 7 * time.Second}) {
		t.Errorf("waits = %v, want two of 7s", e.waits)
	}
	for _, set := range []string{"serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"} {
		if n := len(e.srv.Records(set)); n != 1 {
			t.Errorf("%s: %d records, want 1", set, n)
		}
	}
}

func TestRegister_gives_up_when_throttled_longer_than_it_will_wait(t *testing.T) {
	e := newEnv(t)
	e.srv.Throttle(1, time.Hour)

	_, err := e.reg.Register(context.Background(), headerSpec(), false)

	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusTooManyRequests || !strings.Contains(err.Error(), "run again later") {
		t.Fatalf("err = %v, want the 429 with advice to run again later", err)
	}
	if len(e.waits) != 0 || len(e.srv.Writes()) != 0 {
		t.Errorf("waited %v and sent %v", e.waits, e.srv.Writes())
	}
}

func TestRegister_refuses_a_spec_that_cannot_work_before_any_request(t *testing.T) {
	e := newEnv(t)
	tests := map[string]struct {
		edit func(*registration.Spec)
		want string
	}{
		"pre image on Create": {func(s *registration.Spec) { s.Message = "Create"; s.Attributes = nil }, "--image pre"},
		"attributes on Delete": {func(s *registration.Spec) {
			s.Message = "Delete"
			s.Images = nil
		}, "--attributes"},
		"header without secret":  {func(s *registration.Spec) { s.Secret = "" }, "DVRELAY_WEBHOOK_SECRET"},
		"webhook key, no key":    {func(s *registration.Spec) { s.Auth = registration.AuthWebhookKey; s.FunctionURL = intakeURL }, "--function-key"},
		"port Dataverse refuses": {func(s *registration.Spec) { s.FunctionURL = "https://app.example:8443/api/dataverse/webhook" }, "8443"},
		"table in PascalCase":    {func(s *registration.Spec) { s.Entity = "Opportunity" }, "--entity"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			spec := headerSpec()
			tt.edit(&spec)
			_, err := e.reg.Register(context.Background(), spec, false)
			var se *registration.SpecError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a SpecError mentioning %s", err, tt.want)
			}
			if strings.Contains(err.Error(), functionKey) || strings.Contains(err.Error(), secret) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for specs that cannot work", n)
	}
}

func TestRegister_names_an_unknown_message_or_table_and_writes_nothing(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		edit func(*registration.Spec)
		want string
	}{
		{func(s *registration.Spec) { s.Message = "update" }, `Dataverse spells it "Update"`},
		{func(s *registration.Spec) { s.Message = "Merge"; s.Attributes, s.Images = nil, nil }, "no such message"},
		{func(s *registration.Spec) { s.Entity = "opportunities" }, "--entity opportunities"},
	} {
		spec := headerSpec()
		tt.edit(&spec)
		_, err := e.reg.Register(context.Background(), spec, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want one containing %s", err, tt.want)
		}
	}
	if w := e.srv.Writes(); len(w) != 0 {
		t.Errorf("sent %v", w)
	}
}

func TestUnregister_deletes_images_then_steps_then_the_endpoint(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	other := headerSpec()
	other.Entity, other.Message, other.Attributes, other.Images = "account", "Create", nil, nil
	e.register(t, other, false)
	e.srv.ResetRequests()

	dry, err := e.reg.Unregister(context.Background(), "dvrelay", true)
	if err != nil || len(e.srv.Writes()) != 0 || len(dry) != 4 {
		t.Fatalf("dry run: %v, %v; sent %v", dry, err, e.srv.Writes())
	}
	changes, err := e.reg.Unregister(context.Background(), "dvrelay", false)
	if err != nil {
		t.Fatalf("Unregister: %v", err)
	}

	var order []string
	for _, w := range e.srv.Writes() {
		if w.Method != http.MethodDelete {
			t.Errorf("unregister sent %s", w)
		}
		order = append(order, strings.SplitN(strings.TrimPrefix(w.Path, dataversetest.APIPath), "(", 2)[0])
	}
	if got := strings.Join(order, " "); got != "sdkmessageprocessingstepimages sdkmessageprocessingsteps sdkmessageprocessingsteps serviceendpoints" {
		t.Errorf("deleted in order %s", got)
	}
	for _, set := range []string{"serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"} {
		if n := len(e.srv.Records(set)); n != 0 {
			t.Errorf("%s: %d records left", set, n)
		}
	}
	for _, c := range changes {
		if !c.Done || c.Action != registration.Delete {
			t.Errorf("change %v", c)
		}
	}

	again, err := e.reg.Unregister(context.Background(), "dvrelay", false)
	if err != nil || len(again) != 0 {
		t.Errorf("unregistering again = %v, %v; want nothing to do", again, err)
	}
}

func TestList_returns_the_steps_posting_to_an_intake_url(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	elsewhere := headerSpec()
	elsewhere.Name, elsewhere.FunctionURL = "someone-else", "https://other.example/api/hook"
	e.register(t, elsewhere, false)

	regs, err := e.reg.List(context.Background(), "https://DVRELAY-APP.azurewebsites.net/api/dataverse/webhook/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(regs) != 1 {
		t.Fatalf("registrations = %+v, want the one step on this intake", regs)
	}
	r := regs[0]
	if r.Endpoint != "dvrelay" || r.Step != "dvrelay: Update of opportunity" || r.Message != "Update" || r.Entity != "opportunity" ||
		r.Stage != 40 || r.Mode != 1 || !r.Enabled || r.FilteringAttributes != "estimatedvalue,statuscode" || r.Auth != "header" {
		t.Errorf("registration = %+v", r)
	}
	if !slices.Equal(r.Images, []string{"PreImage (pre: estimatedvalue,name)"}) {
		t.Errorf("images = %v", r.Images)
	}
	if strings.Contains(r.URL, functionKey) {
		t.Errorf("URL shows the function key: %s", r.URL)
	}
}

func TestRegister_enables_a_disabled_step_and_leaves_images_under_other_aliases_alone(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)
	step := e.srv.Records("sdkmessageprocessingsteps")[0]
	stepID := fmt.Sprint(step["sdkmessageprocessingstepid"])
	req, _ := http.NewRequest(http.MethodPatch, e.srv.URL()+dataversetest.APIPath+"sdkmessageprocessingsteps("+stepID+")",
		strings.NewReader(`{"statecode":1,"statuscode":2}`))
	req.Header.Set("Authorization", "Bearer registration-token")
	if resp, err := e.srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("disable the step: %v %v", resp, err)
	}
	e.srv.Seed("sdkmessageprocessingstepimages", map[string]any{"entityalias": "Custom", "imagetype": 1, "_sdkmessageprocessingstepid_value": stepID})

	spec := headerSpec()
	spec.Images = nil
	spec.Prune = true
	changes := e.register(t, spec, false)

	if got := e.srv.Records("sdkmessageprocessingsteps")[0]; fmt.Sprintf("%v/%v", got["statecode"], got["statuscode"]) != "0/1" {
		t.Errorf("step state = %v/%v, want enabled (0/1)", got["statecode"], got["statuscode"])
	}
	imgs := e.srv.Records("sdkmessageprocessingstepimages")
	if len(imgs) != 1 || imgs[0]["entityalias"] != "Custom" {
		t.Errorf("images = %v, want only the Custom one (PreImage removed)", imgs)
	}
	if got := actions(changes); got != "unchanged serviceendpoints, update sdkmessageprocessingsteps, delete sdkmessageprocessingstepimages" {
		t.Errorf("changes = %s", got)
	}
}

func TestRegister_a_rerun_keeps_the_images_and_attributes_it_does_not_mention(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false) // --attributes statuscode,estimatedvalue --image pre:name,estimatedvalue
	e.srv.ResetRequests()

	// The second example: only a post image, nothing about attributes or the pre image.
	spec := headerSpec()
	spec.Attributes = nil
	spec.Images = []registration.Image{{Type: registration.PostImage}}
	changes := e.register(t, spec, false)

	for _, w := range e.srv.Writes() {
		if w.Method != http.MethodPost || !strings.HasSuffix(w.Path, "sdkmessageprocessingstepimages") {
			t.Errorf("rerun sent %s; want only the post image created", w)
		}
	}
	var aliases []string
	for _, img := range e.srv.Records("sdkmessageprocessingstepimages") {
		aliases = append(aliases, fmt.Sprint(img["entityalias"]))
	}
	slices.Sort(aliases)
	if !slices.Equal(aliases, []string{"PostImage", "PreImage"}) {
		t.Errorf("images = %v, want the pre image kept beside the new post image", aliases)
	}
	if got := e.srv.Records("sdkmessageprocessingsteps")[0]["filteringattributes"]; got != "estimatedvalue,statuscode" {
		t.Errorf("filteringattributes = %v, want them kept", got)
	}
	if out := printed(changes); !strings.Contains(out, "--prune removes it") {
		t.Errorf("report does not say the pre image was kept:\n%s", out)
	}
}

func TestRegister_prune_clears_filtering_attributes_not_given(t *testing.T) {
	e := newEnv(t)
	e.register(t, headerSpec(), false)

	spec := headerSpec()
	spec.Attributes, spec.Prune = nil, true
	e.register(t, spec, false)

	if got, has := e.srv.Records("sdkmessageprocessingsteps")[0]["filteringattributes"]; has && got != nil {
		t.Errorf("filteringattributes = %v, want none (every update)", got)
	}
}

func TestRegister_refuses_a_column_the_table_does_not_have_and_names_the_closest(t *testing.T) {
	e := newEnv(t)
	spec := headerSpec()
	spec.Attributes = []string{"estimatedvalu", "statuscode"}
	spec.Images = []registration.Image{{Type: registration.PreImage, Attributes: []string{"nmae"}}}

	_, err := e.reg.Register(context.Background(), spec, false)

	var se *registration.SpecError
	if !errors.As(err, &se) || len(se.Problems) != 2 {
		t.Fatalf("err = %v, want a SpecError with two problems", err)
	}
	for _, want := range []string{
		`--attributes: opportunity has no column "estimatedvalu"; did you mean "estimatedvalue"?`,
		`--image pre: opportunity has no column "nmae"; did you mean "name"?`,
	} {
		if !slices.Contains(se.Problems, want) {
			t.Errorf("problems = %q, want %q", se.Problems, want)
		}
	}
	if w := e.srv.Writes(); len(w) != 0 {
		t.Errorf("sent %v", w)
	}
}

func TestRegister_solution_puts_the_created_records_in_it(t *testing.T) {
	e := newEnv(t)
	e.srv.Seed("solutions", map[string]any{"uniquename": "ContosoIntegration", "ismanaged": false})
	e.srv.Seed("solutions", map[string]any{"uniquename": "ContosoManaged", "ismanaged": true})
	spec := headerSpec()
	spec.Solution = "ContosoIntegration"

	e.register(t, spec, false)

	var creates int
	for _, w := range e.srv.Writes() {
		if got := w.Header.Get("MSCRM.SolutionUniqueName"); got != "ContosoIntegration" {
			t.Errorf("%s carried MSCRM.SolutionUniqueName %q", w, got)
		}
		creates++
	}
	if creates != 3 {
		t.Errorf("creates = %d, want 3", creates)
	}
	e.srv.ResetRequests()
	spec.Attributes = []string{"closeprobability"}
	e.register(t, spec, false)
	if w := e.srv.Writes(); len(w) != 1 || w[0].Method != http.MethodPatch || w[0].Header.Get("MSCRM.SolutionUniqueName") != "" {
		t.Errorf("update sent %v, want one PATCH without the solution header (it adds new records only)", w)
	}

	for name, want := range map[string]string{"NoSuchSolution": "no solution has this unique name", "ContosoManaged": "managed solution"} {
		other := headerSpec()
		other.Name, other.Solution = "other", name
		_, err := e.reg.Register(context.Background(), other, false)
		var se *registration.SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("--solution %s: err = %v, want a SpecError saying %s", name, err, want)
		}
	}
}

func TestRegister_images_on_SetState_and_Assign_use_the_message_property_that_names_the_record(t *testing.T) {
	for message, property := range map[string]string{"SetState": "EntityMoniker", "Assign": "Target"} {
		t.Run(message, func(t *testing.T) {
			e := newEnv(t)
			spec := headerSpec()
			spec.Message, spec.Attributes = message, nil
			spec.Images = []registration.Image{{Type: registration.PreImage}, {Type: registration.PostImage}}

			e.register(t, spec, false)

			imgs := e.srv.Records("sdkmessageprocessingstepimages")
			if len(imgs) != 2 {
				t.Fatalf("images = %v", imgs)
			}
			for _, img := range imgs {
				if img["messagepropertyname"] != property {
					t.Errorf("%v messagepropertyname = %v, want %s", img["entityalias"], img["messagepropertyname"], property)
				}
			}
		})
	}
}
