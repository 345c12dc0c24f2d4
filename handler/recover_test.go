package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/recovery"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

const (
	recStep      = "5f0e1d2c-0000-4000-8000-00000000b001"
	recOpp       = "7c1d0000-0000-4000-8000-0000000000d1"
	recOppGone   = "7c1d0000-0000-4000-8000-0000000000d2"
	recJob       = "a1000000-0000-4000-8000-000000000001"
	recJobGone   = "a1000000-0000-4000-8000-000000000002"
	recJobWait   = "a1000000-0000-4000-8000-000000000003"
	recJobNoRead = "a1000000-0000-4000-8000-000000000004"
)

// recoverEnv is a Dataverse double holding a webhook registered for the intake, failed system
// jobs of its step, and the records they are about; runs of `handler recover` against it
// publish into an embedded queue in dataDir.
type recoverEnv struct {
	t       *testing.T
	srv     *dataversetest.Server
	deps    operatorDeps
	dataDir string
	waits   []time.Duration
}

func newRecoverEnv(t *testing.T) *recoverEnv {
	t.Helper()
	tables := append(dataversetest.RegistrationTables(),
		dataversetest.Table{LogicalName: "asyncoperation", EntitySet: "asyncoperations"},
		dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities"})
	e := &recoverEnv{t: t, srv: dataversetest.NewServer(t, tables...), dataDir: t.TempDir()}
	e.srv.RequireToken("operator-token")
	e.deps = operatorDeps{
		credential: func(dataverse.OperatorIdentity) (azcore.TokenCredential, error) {
			return dataversetest.StaticCredential{Token: "operator-token"}, nil
		},
		httpClient: e.srv.Client(),
		sleep:      func(_ context.Context, d time.Duration) error { e.waits = append(e.waits, d); return nil },
	}

	msg := e.srv.Seed("sdkmessages", map[string]any{"name": "Update"})
	filter := e.srv.Seed("sdkmessagefilters", map[string]any{"primaryobjecttypecode": "opportunity", "_sdkmessageid_value": msg})
	endpoint := e.srv.Seed("serviceendpoints", map[string]any{"name": "dvrelay", "contract": 8, "authtype": 5, "url": regIntake})
	e.srv.Seed("sdkmessageprocessingsteps", map[string]any{
		"sdkmessageprocessingstepid": recStep, "name": "dvrelay: Update of opportunity", "_eventhandler_value": endpoint,
		"_sdkmessageid_value": msg, "_sdkmessagefilterid_value": filter, "filteringattributes": "estimatedvalue",
		"stage": 40, "mode": 1, "statecode": 0,
	})
	e.srv.Seed("opportunities", map[string]any{"opportunityid": recOpp, "name": "Fabrikam renewal", "estimatedvalue": 12500})
	for _, j := range []struct {
		id, record, table string
		status            int
	}{
		{recJob, recOpp, "opportunity", recovery.StatusFailed},
		{recJobGone, recOppGone, "opportunity", recovery.StatusFailed},
		{recJobWait, recOpp, "opportunity", recovery.StatusWaiting},
	} {
		e.srv.Seed("asyncoperations", map[string]any{
			"asyncoperationid": j.id, "statuscode": j.status, "operationtype": 1, "messagename": "Update",
			"primaryentitytype": j.table, "_owningextensionid_value": recStep, "createdon": "2026-11-02T10:00:00Z",
			"_regardingobjectid_value": j.record, "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": j.table,
		})
	}
	return e
}

func (e *recoverEnv) lookup(k string) (string, bool) {
	env := map[string]string{"DATAVERSE_URL": e.srv.URL(), "DVRELAY_DATA_DIR": e.dataDir}
	v, ok := env[k]
	return v, ok
}

func (e *recoverEnv) recover(args ...string) cliRun {
	e.t.Helper()
	var out, errOut bytes.Buffer
	code := recoverCommand(context.Background(), args, e.lookup, &out, &errOut, e.deps, false)
	return cliRun{code, out.String(), errOut.String()}
}

// queued counts the messages waiting in the embedded queue.
func (e *recoverEnv) queued() int {
	e.t.Helper()
	q, err := local.Open(context.Background(), e.dataDir, local.Options{}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer q.Close()
	st, err := q.Stats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Queued
}

func TestRecover_dry_run_lists_the_jobs_and_publishes_nothing(t *testing.T) {
	e := newRecoverEnv(t)
	e.dataDir = filepath.Join(t.TempDir(), "not-there") // a dry run needs no queue

	r := e.recover("--since", "2026-11-01", "--function-url", regIntake+"?code="+regKey, "--dry-run")

	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`step "dvrelay: Update of opportunity" (` + recStep + `)`,
		"would publish  OpportunityUpdated  opportunity(" + recOpp + ")  job " + recJob + " (failed 2026-11-02T10:00:00Z)  EventId " + event.RereadEventID(recJob),
		"skipped        OpportunityUpdated  opportunity(" + recOppGone + ")  job " + recJobGone + " (failed 2026-11-02T10:00:00Z): the record no longer exists (404)",
		"job " + recJobWait + " (waiting 2026-11-02T10:00:00Z): waiting, not failed",
		"dry run: found 3 system jobs (2 failed, 1 waiting): 1 would be published, 2 skipped, 0 failed; nothing was published",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(e.dataDir); !os.IsNotExist(err) {
		t.Errorf("a dry run touched the data dir: %v", err)
	}
	if len(e.srv.Writes()) != 0 {
		t.Errorf("a dry run wrote to Dataverse: %v", e.srv.Writes())
	}
}

func TestRecover_publishes_once_however_often_it_runs(t *testing.T) {
	e := newRecoverEnv(t)

	for run := 1; run <= 2; run++ {
		r := e.recover("--since", "2026-11-01", "--step", recStep)
		if r.code != 0 || !strings.Contains(r.stdout, "found 3 system jobs (2 failed, 1 waiting): 1 published, 2 skipped, 0 failed") {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", run, r.code, r.stdout, r.stderr)
		}
		if n := e.queued(); n != 1 {
			t.Errorf("after run %d the queue holds %d messages, want 1 (the second run's copy is a duplicate)", run, n)
		}
	}
}

func TestRecover_exits_1_when_a_job_could_not_be_recovered(t *testing.T) {
	e := newRecoverEnv(t)
	// A job about a table the environment does not know: its record cannot be read.
	e.srv.Seed("asyncoperations", map[string]any{
		"asyncoperationid": recJobNoRead, "statuscode": recovery.StatusFailed, "operationtype": 1, "messagename": "Update",
		"primaryentitytype": "new_widget", "_owningextensionid_value": recStep, "createdon": "2026-11-03T10:00:00Z",
		"_regardingobjectid_value": recOpp,
	})

	r := e.recover("--since", "2026-11-01", "--step", recStep)

	if r.code != 1 || !strings.Contains(r.stdout, "failed         NewWidgetUpdated  new_widget("+recOpp+")  job "+recJobNoRead) ||
		!strings.Contains(r.stdout, "1 published, 2 skipped, 1 failed") || !strings.Contains(r.stderr, "run the same command again") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := e.queued(); n != 1 {
		t.Errorf("queue holds %d, want the one job that could be recovered", n)
	}
}

func TestRecover_waits_when_Dataverse_limits_requests(t *testing.T) {
	e := newRecoverEnv(t)
	e.srv.Throttle(1, 4*time.Second)

	r := e.recover("--since", "2026-11-01", "--step", recStep)

	if r.code != 0 || !slices.Equal(e.waits, []time.Duration{4 * time.Second}) || !strings.Contains(r.stderr, "Dataverse is limiting requests") {
		t.Errorf("exit %d, waits %v\nstderr:\n%s", r.code, e.waits, r.stderr)
	}
}

func TestRecover_refuses_a_queue_a_running_serve_owns(t *testing.T) {
	e := newRecoverEnv(t)
	q, err := local.Open(context.Background(), e.dataDir, local.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	r := e.recover("--since", "2026-11-01", "--step", recStep)

	if r.code != 1 || !strings.Contains(r.stderr, "stop it, run recover, then start it again") {
		t.Errorf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if len(e.srv.Requests()) != 0 {
		t.Errorf("read Dataverse before finding it could not publish: %v", e.srv.Requests())
	}
}

func TestRecover_usage_errors_exit_2_before_any_request(t *testing.T) {
	e := newRecoverEnv(t)
	missing := filepath.Join(t.TempDir(), "nowhere")
	for name, tc := range map[string]struct {
		args    []string
		dataDir string
		want    string
	}{
		"no since":           {[]string{"--step", recStep}, "", "--since is required"},
		"bad since":          {[]string{"--since", "last week", "--step", recStep}, "", `--since "last week"`},
		"no steps":           {[]string{"--since", "48h"}, "", "say whose jobs to recover"},
		"steps and url":      {[]string{"--since", "48h", "--step", recStep, "--function-url", regIntake}, "", "not both"},
		"step not a GUID":    {[]string{"--since", "48h", "--step", "erp-sync"}, "", "is not a step id"},
		"argument":           {[]string{"--since", "48h", "--step", recStep, "now"}, "", "unexpected argument"},
		"no queue there":     {[]string{"--since", "48h", "--step", recStep}, missing, "no embedded queue at " + missing},
		"url of no intake":   {[]string{"--since", "48h", "--function-url", "https://elsewhere.example/api/x", "--dry-run"}, "", "no webhook step posts to"},
		"url not a url":      {[]string{"--since", "48h", "--function-url", "intake", "--dry-run"}, "", "not an absolute URL"},
		"since in future":    {[]string{"--since", "2999-01-01", "--step", recStep}, "", "in the future"},
		"dataverse url http": {[]string{"--since", "48h", "--step", recStep, "--dry-run", "--dataverse-url", "http://example.com"}, "", "must use https"},
	} {
		t.Run(name, func(t *testing.T) {
			e.srv.ResetRequests()
			e.dataDir = tc.dataDir
			if e.dataDir == "" {
				e.dataDir = t.TempDir()
			}
			r := e.recover(tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want 2 with %q\nstderr:\n%s", r.code, tc.want, r.stderr)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("created %s", missing)
			}
			for _, req := range e.srv.Requests() {
				if !strings.Contains(req.Path, "serviceendpoints") {
					t.Errorf("sent %s", req)
				}
			}
		})
	}
}

func TestRun_knows_the_recover_command(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"recover"}, func(string) (string, bool) { return "", false }, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "--since is required") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	run(context.Background(), []string{"help"}, func(string) (string, bool) { return "", false }, &out, &errOut)
	if !strings.Contains(out.String(), "handler recover --since D") {
		t.Errorf("usage does not list recover:\n%s", out.String())
	}
}
