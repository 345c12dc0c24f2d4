package recovery

import (
	"fmt"
	"strings"
	"time"
)

// String is the result as one report line: outcome, event name, record, system job, and the
// EventId published or why nothing was. It holds ids and names only, never column values.
func (r Result) String() string {
	record := "no record"
	if r.Job.RecordID != "" {
		record = r.Job.Entity + "(" + r.Job.RecordID + ")"
	}
	created := "at an unknown time"
	if !r.Job.CreatedOn.IsZero() {
		created = r.Job.CreatedOn.UTC().Format(time.RFC3339)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-13s  %s  %s  job %s (%s %s)", r.Outcome, r.EventName, record, r.Job.ID, statusName(r.Job.Status), created)
	if r.EventID != "" && (r.Outcome == Published || r.Outcome == WouldPublish) {
		fmt.Fprintf(&b, "  EventId %s", r.EventID)
	}
	if r.Reason != "" {
		b.WriteString(": " + r.Reason)
	}
	return b.String()
}

func statusName(status int) string {
	switch status {
	case StatusFailed:
		return "failed"
	case StatusWaiting:
		return "waiting"
	}
	return fmt.Sprintf("status %d", status)
}

// String is the summary line.
func (s Summary) String() string {
	var b strings.Builder
	if s.DryRun {
		b.WriteString("dry run: ")
	}
	fmt.Fprintf(&b, "found %d system jobs (%d failed, %d waiting): ", s.Found, s.Found-s.Waiting, s.Waiting)
	if s.DryRun {
		fmt.Fprintf(&b, "%d would be published", s.Published)
	} else {
		fmt.Fprintf(&b, "%d published", s.Published)
	}
	fmt.Fprintf(&b, ", %d skipped, %d failed", s.Skipped, s.Failed)
	if s.NotTried > 0 {
		fmt.Fprintf(&b, "; interrupted with %d not tried", s.NotTried)
	}
	if s.DryRun {
		b.WriteString("; nothing was published")
	}
	return b.String()
}
