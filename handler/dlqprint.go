package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/platform/oneline"
	"github.com/dvrelay/dvrelay/internal/support"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

// maxCauseWidth bounds the CAUSE column; `dlq show` prints the whole description.
const maxCauseWidth = 120

// printTable writes one line per dead letter, the cause last: it is the one column of any length.
func printTable(w io.Writer, items []admin.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tEVENT\tRECORD\tREASON\tATTEMPTS\tCORRELATION ID\tCAUSE")
	cut := false
	for _, d := range items {
		cause := oneLine(d.Cause)
		if utf8.RuneCountInString(cause) > maxCauseWidth {
			cause = string([]rune(cause)[:maxCauseWidth-1]) + "…"
			cut = true
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.SequenceNumber, d.DeadLetteredAt.UTC().Format(time.RFC3339),
			orDash(d.EventName), orDash(support.RecordOf(d)), orDash(d.Reason), attempts(d), orDash(d.CorrelationID), orDash(cause))
	}
	_ = tw.Flush()
	if cut {
		fmt.Fprintf(w, "(causes cut at %d characters: 'handler dlq show SEQ' prints the whole description)\n", maxCauseWidth)
	}
}

// attempts is the attempt that failed, with the deliveries of that attempt when there was more
// than one (the worker crashed or timed out on it).
func attempts(d admin.DeadLetter) string {
	if d.DeliveryCount > 1 {
		return fmt.Sprintf("%d (%s)", d.Attempt, deliveries(d.DeliveryCount))
	}
	return strconv.Itoa(d.Attempt)
}

// oneLineSummary is a dead letter in one line, for what a resubmit or purge would act on.
func oneLineSummary(d admin.DeadLetter) string {
	return fmt.Sprintf("%d  %s  %s  %s  %s  %s", d.SequenceNumber, d.DeadLetteredAt.UTC().Format(time.RFC3339),
		orDash(d.EventName), d.EventID, orDash(d.Reason), oneLine(d.Cause))
}

// printJSONLines writes each item as one compact JSON object per line. Listings leave out the
// body and the properties; `dlq show --json` has them.
func printJSONLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, item := range items {
		if d, ok := any(item).(admin.DeadLetter); ok {
			d.Body, d.Properties = nil, nil
			if err := enc.Encode(d); err != nil {
				return err
			}
			continue
		}
		if err := enc.Encode(item); err != nil {
			return err
		}
	}
	return nil
}

// printDetail writes everything known about one dead letter, for a person.
func printDetail(w io.Writer, d admin.Detail) {
	fmt.Fprintf(w, "dead letter %d   resubmit: handler dlq resubmit %d   remove: handler dlq purge %d --yes\n",
		d.SequenceNumber, d.SequenceNumber, d.SequenceNumber)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	row("dead-lettered", d.DeadLetteredAt.UTC().Format(time.RFC3339Nano))
	row("event", strings.TrimSpace(d.EventName+" "+d.Entity))
	row("record id", d.RecordID)
	row("order key", d.OrderKey)
	row("event id", d.EventID)
	row("reason", d.Reason)
	row("failed step", d.FailedStep)
	row("attempt", fmt.Sprintf("%d (%s)", d.Attempt, deliveries(d.DeliveryCount)))
	row("message id", d.MessageID)
	row("correlation id", d.CorrelationID)
	_ = tw.Flush()

	switch {
	case d.NewerCompleted != nil:
		fmt.Fprintln(w, support.NewerWarning(d.DeadLetter, d.NewerCompleted))
	case d.OrderKey != "" && !d.CompletionsKept:
		fmt.Fprintln(w, "note: this backend keeps no history of completed events; check the record before resubmitting, "+
			"in case a newer event of it has completed since")
	}
	fmt.Fprintln(w, "description:")
	fmt.Fprintf(w, "  %s\n", orDash(oneLine(d.Description)))

	fmt.Fprintln(w, "properties:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(d.Properties)) {
		fmt.Fprintf(tw, "  %s\t%s\n", k, oneLine(fmt.Sprint(d.Properties[k])))
	}
	_ = tw.Flush()

	fmt.Fprintf(w, "history of event %s (as far as the queue knows):\n", d.EventID)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range d.History {
		state := s.State
		if s.SequenceNumber > 0 {
			state += fmt.Sprintf(" (seq %d)", s.SequenceNumber)
		}
		at := ""
		if s.At != nil {
			at = s.At.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\tattempt %d\t%s\t%s\n", s.MessageID, s.Attempt, state, at)
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "body:")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, d.Body, "  ", "  "); err == nil {
		fmt.Fprintf(w, "  %s\n", pretty.String())
	} else {
		fmt.Fprintf(w, "  %s\n", orDash(string(d.Body)))
	}
}

// printStories writes each event of a record with its timeline, for a person.
func printStories(w io.Writer, rec support.Record) {
	fmt.Fprintf(w, "what happened to %s: %d event(s), oldest first\n", rec.Key, len(rec.Events))
	for i, st := range rec.Events {
		fmt.Fprintf(w, "\n%d  %s  %s %s  event %s  record %s  correlation %s\n", i+1, st.Accepted.UTC().Format(time.RFC3339),
			orDash(st.EventName), st.Entity, st.EventID, orDash(st.RecordID), orDash(st.CorrelationID))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, e := range st.Timeline {
			attempt, status, took := "", "", ""
			if e.Attempt > 0 {
				attempt = fmt.Sprintf("attempt %d", e.Attempt)
			}
			if e.Status > 0 {
				status = strconv.Itoa(e.Status)
			}
			if e.DurationMs > 0 {
				took = fmt.Sprintf("%d ms", e.DurationMs)
			}
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Kind, attempt, e.Step, status, took, oneLine(e.Detail))
		}
		if len(st.Timeline) == 0 {
			fmt.Fprintf(tw, "   %s\t%s\t\t\t\t\t%s\n", st.At.UTC().Format(time.RFC3339), st.Outcome, oneLine(st.Cause))
		}
		_ = tw.Flush()
	}
}

// oneLine escapes what would break a line or a terminal (see oneline.Escape).
func oneLine(s string) string { return oneline.Escape([]byte(s)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func deliveries(n int) string {
	if n == 1 {
		return "1 delivery"
	}
	return strconv.Itoa(n) + " deliveries"
}
