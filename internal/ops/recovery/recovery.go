// Package recovery finds the webhook posts Dataverse gave up on, re-reads the records they were
// about, and queues a reconcile event for each.
//
// Dataverse retries a failed webhook once, and only after a 502, 503 or 504; a failed system job
// cannot be resumed. What it keeps is the job itself (asyncoperation, statuscode 31): the step
// that posted, the message, the record, when. The context it stored is undocumented and is not
// the webhook body, so nothing here replays it: the record is read as it is now and published as
// the event the intake would have published, with Source dataverse-recover. A late event should
// carry current state anyway; routes then act on what the record holds today.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/functions/webhook"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/ops/registration"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// WebAPI is what recovery reads through; *dataverse.Client has it.
type WebAPI interface {
	Get(ctx context.Context, path string, query url.Values, out any) error
	GetRecord(ctx context.Context, entitySet, id string, query url.Values, out any) error
	EntitySetName(ctx context.Context, logicalName string) (string, error)
}

var _ WebAPI = (*dataverse.Client)(nil)

// System job status codes (asyncoperation.statuscode) recovery looks for.
const (
	StatusWaiting = 10 // Suspended: Dataverse may still post it once resumed
	StatusFailed  = 31 // Completed, Failed: Dataverse will never post it again
)

// Entity sets recovery reads besides the records themselves.
const (
	setJobs  = "asyncoperations"
	setSteps = "sdkmessageprocessingsteps"
)

// operationTypeSystemEvent is asyncoperation.operationtype for the job of an asynchronous step.
const operationTypeSystemEvent = 1

// jobColumns are the system job columns recovery reads.
var jobColumns = []string{
	"asyncoperationid", "messagename", "primaryentitytype", "_regardingobjectid_value",
	"correlationid", "createdon", "statuscode", "_createdby_value",
}

// Options tune a Recoverer. The zero value is fine.
type Options struct {
	// Retry is how Web API calls wait out throttling (429 with Retry-After).
	Retry dataverse.Retry
	// UseSessions sets SessionID = the record's order key on published messages, as the intake does for a
	// session-enabled queue (DVRELAY_USE_SESSIONS).
	UseSessions bool
	// Now is the clock, for a job without a creation time; nil means time.Now.
	Now func() time.Time
}

// Recoverer finds failed system jobs in one environment and publishes reconcile events for them.
type Recoverer struct {
	api         WebAPI
	pub         queue.Publisher
	retry       dataverse.Retry
	useSessions bool
	now         func() time.Time
	parser      *event.Parser
}

// New returns a Recoverer reading through api and publishing to pub. pub may be nil for a
// Recoverer that only runs dry.
func New(api WebAPI, pub queue.Publisher, opts Options) (*Recoverer, error) {
	parser, err := event.NewParser()
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	r := &Recoverer{
		api: api, pub: pub, retry: opts.Retry, useSessions: opts.UseSessions, now: opts.Now,
		parser: parser,
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Step is a webhook step whose system jobs are looked at.
type Step struct {
	ID   string
	Name string // empty when the step could not be read
	// FilteringAttributes are the columns whose update fires the step; empty means any column.
	FilteringAttributes []string
	// Missing is true when no step has this id (any more): its failed jobs outlive it, so they
	// are still looked for.
	Missing bool
}

func (s Step) String() string {
	if s.Name == "" {
		return "step " + s.ID
	}
	return fmt.Sprintf("step %q (%s)", s.Name, s.ID)
}

// StepsFromRegistrations are the steps of registrations (registration.List of the intake URL);
// an endpoint without steps adds none.
func StepsFromRegistrations(regs []registration.Registration) []Step {
	var steps []Step
	for _, reg := range regs {
		if reg.StepID == "" {
			continue
		}
		steps = append(steps, Step{ID: reg.StepID, Name: reg.Step, FilteringAttributes: registration.SplitColumns(reg.FilteringAttributes)})
	}
	return steps
}

// StepsByID reads the steps with these ids (GUIDs).
func (r *Recoverer) StepsByID(ctx context.Context, ids []string) ([]Step, error) {
	steps := make([]Step, 0, len(ids))
	for _, id := range ids {
		var rec struct {
			Name                string `json:"name"`
			FilteringAttributes string `json:"filteringattributes"`
		}
		err := r.retry.Do(ctx, true, func() error {
			return r.api.GetRecord(ctx, setSteps, id, url.Values{"$select": {"name,filteringattributes"}}, &rec)
		})
		switch {
		case isNotFound(err):
			steps = append(steps, Step{ID: strings.ToLower(id), Missing: true})
		case err != nil:
			return nil, fmt.Errorf("read step %s: %w", id, err)
		default:
			steps = append(steps, Step{ID: strings.ToLower(id), Name: rec.Name, FilteringAttributes: registration.SplitColumns(rec.FilteringAttributes)})
		}
	}
	return steps, nil
}

// Job is a system job of a step that did not deliver its post.
type Job struct {
	ID            string // asyncoperationid
	Step          Step
	Status        int    // StatusFailed or StatusWaiting
	Message       string // Create, Update, Delete, …
	Entity        string // the record's table (logical name); "" when the job names none
	RecordID      string // "" when the job names no record
	CorrelationID string
	CreatedBy     string // the systemuser the job ran for
	CreatedOn     time.Time
}

// jobRecord is an asyncoperation as the Web API returns it with lookup annotations.
type jobRecord struct {
	ID                string  `json:"asyncoperationid"`
	MessageName       string  `json:"messagename"`
	PrimaryEntityType string  `json:"primaryentitytype"`
	Regarding         *string `json:"_regardingobjectid_value"`
	RegardingTable    string  `json:"_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"`
	CorrelationID     *string `json:"correlationid"`
	CreatedOn         string  `json:"createdon"`
	StatusCode        int     `json:"statuscode"`
	CreatedBy         *string `json:"_createdby_value"`
}

// FindJobs lists the failed and the waiting system jobs of steps created at or after since,
// oldest first. It asks once per step and status, with plain "eq" filters that every
// Dataverse version reads the same way.
func (r *Recoverer) FindJobs(ctx context.Context, steps []Step, since time.Time) ([]Job, error) {
	ctx = dataverse.WithAnnotations(ctx, dataverse.AnnotationLookupLogicalName)
	var jobs []Job
	seen := map[string]bool{}
	for _, step := range steps {
		if seen[step.ID] {
			continue
		}
		seen[step.ID] = true
		for _, status := range []int{StatusFailed, StatusWaiting} {
			q := url.Values{
				"$select": {strings.Join(jobColumns, ",")},
				"$filter": {fmt.Sprintf("statuscode eq %d and operationtype eq %d and _owningextensionid_value eq %s and createdon ge %s",
					status, operationTypeSystemEvent, step.ID, since.UTC().Format(time.RFC3339))},
				"$orderby": {"createdon asc"},
			}
			var recs []jobRecord
			if err := r.retry.Do(ctx, true, func() error { return r.api.Get(ctx, setJobs, q, &recs) }); err != nil {
				return nil, fmt.Errorf("list the system jobs of %s: %w", step, err)
			}
			for _, rec := range recs {
				jobs = append(jobs, jobOf(rec, step))
			}
		}
	}
	slices.SortStableFunc(jobs, func(a, b Job) int {
		if c := a.CreatedOn.Compare(b.CreatedOn); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return jobs, nil
}

func jobOf(rec jobRecord, step Step) Job {
	j := Job{
		ID:       strings.ToLower(rec.ID),
		Step:     step,
		Status:   rec.StatusCode,
		Message:  rec.MessageName,
		Entity:   rec.RegardingTable,
		RecordID: strings.ToLower(deref(rec.Regarding)),
	}
	if j.Entity == "" {
		// Without the annotation, the job's own table column names the same table.
		j.Entity = rec.PrimaryEntityType
	}
	if id := strings.ToLower(deref(rec.CorrelationID)); id != nilGUID {
		j.CorrelationID = id
	}
	if id := strings.ToLower(deref(rec.CreatedBy)); id != nilGUID {
		j.CreatedBy = id
	}
	if t, err := time.Parse(time.RFC3339Nano, rec.CreatedOn); err == nil {
		j.CreatedOn = t.UTC()
	}
	return j
}

const nilGUID = "00000000-0000-0000-0000-000000000000"

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Outcome is what became of one job.
type Outcome string

const (
	Published    Outcome = "published"
	WouldPublish Outcome = "would publish" // in a dry run
	Skipped      Outcome = "skipped"       // nothing to recover, or not ours to recover
	Failed       Outcome = "failed"        // could not be recovered this time; run again
)

// Result is one job's outcome, with the event it published (or would) and why not.
type Result struct {
	Job       Job
	Outcome   Outcome
	EventID   string
	EventName string
	Reason    string // for Skipped and Failed: why, and what to do
}

// Recover re-reads the record of one job and publishes its reconcile event; in a dry run it
// reads but publishes nothing. A waiting job is skipped: Dataverse may still post it.
func (r *Recoverer) Recover(ctx context.Context, job Job, dryRun bool) Result {
	res := Result{Job: job, EventName: event.EventNameFor(job.Entity, job.Message)}
	skip := func(why string) Result { res.Outcome, res.Reason = Skipped, why; return res }
	fail := func(why string) Result { res.Outcome, res.Reason = Failed, why; return res }
	switch {
	case job.Status == StatusWaiting:
		return skip("waiting, not failed: Dataverse posts it when it is resumed; resume or cancel it under Settings > System Jobs")
	case job.RecordID == "" || job.Entity == "":
		return skip("the job names no record: nothing to re-read")
	case job.Message == "":
		return skip("the job names no message")
	}

	ev, err := r.reconcileEvent(ctx, job)
	if err != nil {
		if errors.Is(err, errRecordGone) {
			return skip("the record no longer exists (404): nothing to re-read")
		}
		return fail(err.Error())
	}
	res.EventID = ev.EventID
	m, err := webhook.EventMessage(ev, r.useSessions)
	if err != nil {
		return fail(err.Error())
	}
	// The worker checks every message against the canonical schema; a message it would
	// dead-letter as poison is not worth sending.
	if _, err := r.parser.DecodeCanonical(m.Body); err != nil {
		return fail(fmt.Sprintf("the event would not pass the worker's schema: %v", err))
	}
	if dryRun {
		res.Outcome = WouldPublish
		return res
	}
	if r.pub == nil {
		return fail("no queue to publish to")
	}
	if err := r.pub.Publish(ctx, m); err != nil {
		return fail(fmt.Sprintf("publish: %v", err))
	}
	res.Outcome = Published
	return res
}

// Summary counts the outcomes of a run.
type Summary struct {
	DryRun    bool
	Found     int // jobs found, failed and waiting
	Waiting   int // of them, waiting
	Published int // published, or would be in a dry run
	Skipped   int
	Failed    int
	NotTried  int // left when the run was interrupted
}

// OK reports whether every job found was published or had nothing to recover.
func (s Summary) OK() bool { return s.Failed == 0 && s.NotTried == 0 }

// Run recovers jobs in order, calling each (when set) after every job with how many are done.
// It stops early, counting the rest as not tried, when ctx ends.
func (r *Recoverer) Run(ctx context.Context, jobs []Job, dryRun bool, each func(done int, res Result)) Summary {
	s := Summary{DryRun: dryRun, Found: len(jobs)}
	for _, j := range jobs {
		if j.Status == StatusWaiting {
			s.Waiting++
		}
	}
	for i, j := range jobs {
		if ctx.Err() != nil {
			s.NotTried = len(jobs) - i
			break
		}
		res := r.Recover(ctx, j, dryRun)
		switch res.Outcome {
		case Published, WouldPublish:
			s.Published++
		case Skipped:
			s.Skipped++
		default:
			s.Failed++
		}
		if each != nil {
			each(i+1, res)
		}
	}
	return s
}

func isNotFound(err error) bool {
	var e *dataverse.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
