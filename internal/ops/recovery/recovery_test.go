package recovery_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/recovery"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
)

const (
	stepID      = "5f0e1d2c-0000-4000-8000-00000000a001"
	otherStepID = "5f0e1d2c-0000-4000-8000-00000000a002"
	oppA        = "7c1d0000-0000-4000-8000-0000000000a1" // exists
	oppGone     = "7c1d0000-0000-4000-8000-0000000000b2" // deleted since its job failed
	oppDeleted  = "7c1d0000-0000-4000-8000-0000000000c3" // its Delete failed
	accountID   = "ac000000-0000-4000-8000-000000000001"
	userID      = "0b000000-0000-4000-8000-000000000001"
	correlation = "c0110000-0000-4000-8000-000000000001"

	jobUpdate     = "a0000000-0000-4000-8000-000000000001"
	jobGone       = "a0000000-0000-4000-8000-000000000002"
	jobDelete     = "a0000000-0000-4000-8000-000000000003"
	jobWaiting    = "a0000000-0000-4000-8000-000000000004"
	jobNoRecord   = "a0000000-0000-4000-8000-000000000005"
	jobTooOld     = "a0000000-0000-4000-8000-000000000006"
	jobOtherStep  = "a0000000-0000-4000-8000-000000000007"
	jobSucceeded  = "a0000000-0000-4000-8000-000000000008"
	jobCreateNoAn = "a0000000-0000-4000-8000-000000000009"
)

var since = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

var tables = []dataversetest.Table{
	{LogicalName: "asyncoperation", EntitySet: "asyncoperations"},
	{LogicalName: "sdkmessageprocessingstep", EntitySet: "sdkmessageprocessingsteps"},
	{LogicalName: "opportunity", EntitySet: "opportunities"},
}

// env is an environment double holding the system jobs of one webhook step (and of another),
// a Web API client for it, and an embedded queue to publish to.
type env struct {
	srv   *dataversetest.Server
	api   *dataverse.Client
	queue *local.Queue
	waits []time.Duration
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{srv: dataversetest.NewServer(t, tables...)}
	e.srv.RequireToken("recover-token")
	var err error
	e.api, err = dataverse.NewClient(e.srv.URL(), dataversetest.StaticCredential{Token: "recover-token"}, &dataverse.Options{HTTPClient: e.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	e.queue, err = local.Open(context.Background(), t.TempDir(), local.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.queue.Close() })

	e.srv.Seed("sdkmessageprocessingsteps", map[string]any{
		"sdkmessageprocessingstepid": stepID, "name": "dvrelay: Update of opportunity", "filteringattributes": "statuscode,estimatedvalue",
	})
	e.srv.Seed("opportunities", map[string]any{
		"opportunityid":          oppA,
		"name":                   "Fabrikam <renewal>",
		"estimatedvalue":         json.Number("12500.0000"),
		"statuscode":             1,
		"description":            nil,
		"modifiedon":             "2026-11-02T10:05:00Z",
		"_parentaccountid_value": accountID,
		"_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname":  "account",
		"_parentaccountid_value@OData.Community.Display.V1.FormattedValue": "Contoso & Sons",
		"estimatedvalue@OData.Community.Display.V1.FormattedValue":         "$12,500.00",
	})
	job := func(id, step string, status int, message, created, record string) map[string]any {
		j := map[string]any{
			"asyncoperationid": id, "statuscode": status, "operationtype": 1, "messagename": message,
			"primaryentitytype": "opportunity", "_owningextensionid_value": step, "createdon": created,
			"correlationid": correlation, "_createdby_value": userID,
		}
		if record != "" {
			j["_regardingobjectid_value"] = record
			j["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = "opportunity"
		}
		return j
	}
	for _, j := range []map[string]any{
		job(jobUpdate, stepID, recovery.StatusFailed, "Update", "2026-11-02T10:00:00Z", oppA),
		job(jobGone, stepID, recovery.StatusFailed, "Update", "2026-11-02T11:00:00Z", oppGone),
		job(jobDelete, stepID, recovery.StatusFailed, "Delete", "2026-11-02T12:00:00Z", oppDeleted),
		job(jobWaiting, stepID, recovery.StatusWaiting, "Update", "2026-11-02T13:00:00Z", oppA),
		job(jobNoRecord, stepID, recovery.StatusFailed, "Update", "2026-11-02T14:00:00Z", ""),
		job(jobTooOld, stepID, recovery.StatusFailed, "Update", "2026-10-31T23:59:59Z", oppA),
		job(jobOtherStep, otherStepID, recovery.StatusFailed, "Update", "2026-11-02T10:00:00Z", oppA),
		job(jobSucceeded, stepID, 30, "Update", "2026-11-02T10:00:00Z", oppA),
	} {
		e.srv.Seed("asyncoperations", j)
	}
	// A job whose lookup came back without its annotation: primaryentitytype names the table.
	noAnnotation := job(jobCreateNoAn, stepID, recovery.StatusFailed, "Create", "2026-11-02T15:00:00Z", "")
	noAnnotation["_regardingobjectid_value"] = oppA
	delete(noAnnotation, "correlationid")
	e.srv.Seed("asyncoperations", noAnnotation)
	return e
}

func (e *env) recoverer(t *testing.T) *recovery.Recoverer {
	t.Helper()
	r, err := recovery.New(e.api, e.queue, recovery.Options{Retry: dataverse.Retry{
		Sleep: func(_ context.Context, d time.Duration) error { e.waits = append(e.waits, d); return nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run finds the jobs of the step and recovers them, returning each result by job id.
func (e *env) run(t *testing.T, dryRun bool) (recovery.Summary, map[string]recovery.Result) {
	t.Helper()
	ctx := context.Background()
	r := e.recoverer(t)
	steps, err := r.StepsByID(ctx, []string{stepID})
	if err != nil {
		t.Fatalf("StepsByID: %v", err)
	}
	jobs, err := r.FindJobs(ctx, steps, since)
	if err != nil {
		t.Fatalf("FindJobs: %v", err)
	}
	results := map[string]recovery.Result{}
	sum := r.Run(ctx, jobs, dryRun, func(_ int, res recovery.Result) { results[res.Job.ID] = res })
	return sum, results
}

func (e *env) queued(t *testing.T) int {
	t.Helper()
	st, err := e.queue.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Queued
}

// received takes every queued message, by MessageID.
func (e *env) received(t *testing.T) map[string]*queue.Received {
	t.Helper()
	out := map[string]*queue.Received{}
	// Events of one record come one at a time (per-record order): complete each to get the next.
	for e.queued(t) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := e.queue.Receive(ctx, 100)
		if err != nil {
			cancel()
			t.Fatalf("Receive: %v", err)
		}
		for _, m := range got {
			out[m.MessageID] = m
			if err := e.queue.Complete(ctx, m); err != nil {
				t.Fatalf("Complete: %v", err)
			}
		}
		cancel()
	}
	return out
}

func TestFindJobs_lists_failed_and_waiting_jobs_of_the_steps_since_the_date_oldest_first(t *testing.T) {
	e := newEnv(t)
	r := e.recoverer(t)

	jobs, err := r.FindJobs(context.Background(), []recovery.Step{{ID: stepID}}, since)
	if err != nil {
		t.Fatal(err)
	}

	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	want := []string{jobUpdate, jobGone, jobDelete, jobWaiting, jobNoRecord, jobCreateNoAn}
	if !slices.Equal(ids, want) {
		t.Fatalf("jobs = %v\nwant %v (not too old, not another step's, not succeeded)", ids, want)
	}
	if j := jobs[0]; j.Entity != "opportunity" || j.RecordID != oppA || j.Message != "Update" || j.CorrelationID != correlation ||
		j.CreatedBy != userID || !j.CreatedOn.Equal(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)) || j.Status != recovery.StatusFailed {
		t.Errorf("first job = %+v", j)
	}
	if j := jobs[5]; j.Entity != "opportunity" || j.RecordID != oppA || j.CorrelationID != "" {
		t.Errorf("job without the lookup annotation = %+v; want the table from primaryentitytype", j)
	}
	for _, req := range e.srv.Requests() {
		if !strings.Contains(req.Header.Get("Prefer"), "Microsoft.Dynamics.CRM.lookuplogicalname") {
			t.Errorf("%s asked for no lookup annotation (Prefer %q)", req, req.Header.Get("Prefer"))
		}
	}
}

func TestRun_dry_run_lists_what_it_would_publish_and_publishes_nothing(t *testing.T) {
	e := newEnv(t)

	sum, results := e.run(t, true)

	if got := e.queued(t); got != 0 {
		t.Errorf("a dry run queued %d messages", got)
	}
	if len(e.srv.Writes()) != 0 {
		t.Errorf("a dry run wrote to Dataverse: %v", e.srv.Writes())
	}
	want := recovery.Summary{DryRun: true, Found: 6, Waiting: 1, Published: 3, Skipped: 3}
	if sum != want {
		t.Errorf("summary = %+v, want %+v", sum, want)
	}
	if res := results[jobUpdate]; res.Outcome != recovery.WouldPublish || res.EventID != event.RereadEventID(jobUpdate) || res.EventName != "OpportunityUpdated" {
		t.Errorf("update job: %+v", res)
	}
	if !strings.HasPrefix(sum.String(), "dry run: found 6 system jobs (5 failed, 1 waiting): 3 would be published, 3 skipped, 0 failed") {
		t.Errorf("summary line = %q", sum.String())
	}
}

func TestRun_publishes_reconcile_events_the_worker_accepts(t *testing.T) {
	e := newEnv(t)

	sum, _ := e.run(t, false)

	if want := (recovery.Summary{Found: 6, Waiting: 1, Published: 3, Skipped: 3}); sum != want || !sum.OK() {
		t.Fatalf("summary = %+v, want %+v", sum, want)
	}
	msgs := e.received(t)
	if len(msgs) != 3 {
		t.Fatalf("queued %d messages, want 3", len(msgs))
	}
	parser, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	decode := func(jobID string) (*queue.Received, event.Event) {
		t.Helper()
		m, ok := msgs[event.RereadEventID(jobID)]
		if !ok {
			t.Fatalf("no message with MessageID = EventId of job %s", jobID)
		}
		ev, err := parser.DecodeCanonical(m.Body)
		if err != nil {
			t.Fatalf("the worker would refuse the event of job %s: %v\n%s", jobID, err, m.Body)
		}
		return m, ev
	}

	m, ev := decode(jobUpdate)
	if ev.EventID != m.MessageID || ev.CorrelationID != correlation || m.CorrelationID != correlation || m.Subject != "OpportunityUpdated" ||
		ev.EventName != "OpportunityUpdated" || ev.Entity != "opportunity" || ev.Message != "Update" || ev.RecordID != oppA ||
		ev.Source != event.SourceRecover || ev.TriggeredBy != userID || ev.Timestamp != "2026-11-02T10:00:00Z" {
		t.Errorf("update event = %+v (message %s, correlation %s, subject %s)", ev, m.MessageID, m.CorrelationID, m.Subject)
	}
	if !slices.Equal(ev.ChangedFields, []string{"estimatedvalue", "statuscode"}) {
		t.Errorf("ChangedFields = %v, want the step's filtering attributes", ev.ChangedFields)
	}
	wantAttrs := map[string]string{
		"opportunityid":   `"` + oppA + `"`,
		"name":            `"Fabrikam <renewal>"`,
		"estimatedvalue":  `12500.0000`,
		"statuscode":      `1`,
		"modifiedon":      `"2026-11-02T10:05:00Z"`,
		"parentaccountid": `{"id":"` + accountID + `","logicalName":"account","name":"Contoso & Sons"}`,
	}
	got := map[string]string{}
	for k, v := range ev.Attributes {
		got[k] = string(v)
	}
	if len(got) != len(wantAttrs) {
		t.Errorf("Attributes = %v\nwant %v (no nulls, no annotations)", got, wantAttrs)
	}
	for k, v := range wantAttrs {
		if got[k] != v {
			t.Errorf("Attributes[%s] = %s, want %s", k, got[k], v)
		}
	}

	_, del := decode(jobDelete)
	if del.EventName != "OpportunityDeleted" || del.RecordID != oppDeleted || del.Attributes != nil || len(del.ChangedFields) != 0 {
		t.Errorf("delete event = %+v, want OpportunityDeleted with the id only", del)
	}

	_, created := decode(jobCreateNoAn)
	if created.EventName != "OpportunityCreated" || created.CorrelationID != created.EventID ||
		!slices.Equal(created.ChangedFields, []string{"estimatedvalue", "name", "parentaccountid", "statuscode"}) {
		t.Errorf("create event = %+v; want every column but the key and stamps changed, the EventId as correlation id", created)
	}
}

func TestRun_twice_publishes_nothing_new(t *testing.T) {
	e := newEnv(t)
	e.run(t, false)
	first := e.queued(t)

	sum, _ := e.run(t, false)

	if got := e.queued(t); first != 3 || got != first {
		t.Errorf("queued %d after the first run and %d after the second; the second must add nothing", first, got)
	}
	if sum.Published != 3 || !sum.OK() {
		t.Errorf("second run summary = %+v", sum)
	}
}

func TestRun_reports_what_it_could_not_recover(t *testing.T) {
	e := newEnv(t)

	_, results := e.run(t, false)

	for job, want := range map[string]string{
		jobGone:     "the record no longer exists (404)",
		jobNoRecord: "the job names no record",
		jobWaiting:  "waiting, not failed",
	} {
		res := results[job]
		if res.Outcome != recovery.Skipped || !strings.Contains(res.Reason, want) {
			t.Errorf("job %s: %s %q, want skipped with %q", job, res.Outcome, res.Reason, want)
		}
		if line := res.String(); !strings.Contains(line, job) || !strings.HasPrefix(line, "skipped") {
			t.Errorf("report line %q names no job or outcome", line)
		}
	}
	if line := results[jobGone].String(); !strings.Contains(line, "opportunity("+oppGone+")") {
		t.Errorf("report line %q does not name the record", line)
	}
}

func TestRun_waits_out_429_as_Retry_After_asks(t *testing.T) {
	e := newEnv(t)
	e.srv.Throttle(2, 7*time.Second)

	sum, _ := e.run(t, false)

	if !slices.Equal(e.waits, []time.Duration{7 * time.Second, 7 * time.Second}) {
		t.Errorf("waits = %v, want two of 7s", e.waits)
	}
	if sum.Published != 3 || !sum.OK() {
		t.Errorf("summary = %+v, want every job recovered after the waits", sum)
	}
}

func TestRun_counts_a_record_it_cannot_read_as_failed_and_carries_on(t *testing.T) {
	e := newEnv(t)
	r := e.recoverer(t)
	ctx := context.Background()
	jobs, err := r.FindJobs(ctx, []recovery.Step{{ID: stepID}}, since)
	if err != nil {
		t.Fatal(err)
	}
	// The first re-read (the metadata lookup for opportunity) is refused.
	e.srv.Fail(1, http.StatusForbidden, "0x80040220", "missing prvReadOpportunity")

	var lines []string
	sum := r.Run(ctx, jobs, false, func(_ int, res recovery.Result) { lines = append(lines, res.String()) })

	if sum.Failed != 1 || sum.Published != 2 || sum.OK() {
		t.Errorf("summary = %+v, want 1 failed and the rest recovered", sum)
	}
	if !strings.HasPrefix(lines[0], "failed") || !strings.Contains(lines[0], "403") {
		t.Errorf("first line = %q, want the failure with its status", lines[0])
	}
}

func TestRun_stops_when_interrupted_and_counts_the_rest(t *testing.T) {
	e := newEnv(t)
	r := e.recoverer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jobs, err := r.FindJobs(ctx, []recovery.Step{{ID: stepID}}, since)
	if err != nil {
		t.Fatal(err)
	}

	sum := r.Run(ctx, jobs, false, func(done int, _ recovery.Result) {
		if done == 2 {
			cancel()
		}
	})

	if sum.NotTried != 4 || sum.OK() || !strings.Contains(sum.String(), "interrupted with 4 not tried") {
		t.Errorf("summary = %+v (%s)", sum, sum)
	}
}

func TestStepsByID_keeps_a_step_that_no_longer_exists(t *testing.T) {
	e := newEnv(t)

	steps, err := e.recoverer(t).StepsByID(context.Background(), []string{stepID, otherStepID})

	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].Name != "dvrelay: Update of opportunity" || steps[0].Missing ||
		!slices.Equal(steps[0].FilteringAttributes, []string{"statuscode", "estimatedvalue"}) ||
		steps[1].ID != otherStepID || !steps[1].Missing {
		t.Errorf("steps = %+v", steps)
	}
}

func TestParseSince_reads_dates_times_and_spans_back(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-01":                time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-01T08:00:00+01:00": time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC),
		"48h":                       time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC),
		"7d":                        time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC),
	} {
		got, err := recovery.ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-2h", "-1d", "2027-01-01"} {
		if _, err := recovery.ParseSince(in, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("ParseSince(%q) = %v, want an error naming --since", in, err)
		}
	}
}
