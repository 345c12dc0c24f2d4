package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// WriteText writes the report for a person at a terminal: the intake's verdict and checks,
// then the answer it would give (refused) or the event and what the worker would do with it.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "refused"
	switch {
	case r.Accepted():
		verdict = "accepted"
	case r.Status >= 200 && r.Status < 300:
		verdict = "not queued"
	}
	fmt.Fprintf(&b, "intake: %s, %d %s\n", verdict, r.Status, http.StatusText(r.Status))
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %-4s  %s: %s\n", c.Verdict, c.Name, c.Detail)
	}
	if !r.Accepted() {
		if r.Status >= 200 && r.Status < 300 {
			fmt.Fprintf(&b, "\nthe intake would answer %d and queue nothing:\n%s\n", r.Status, indent(r.Problem))
		} else {
			fmt.Fprintf(&b, "\nthe intake would answer %d with application/problem+json:\n%s\n", r.Status, indent(r.Problem))
		}
		b.WriteString("\nNothing was sent: explain calls no downstream and queues nothing.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}

	fmt.Fprintf(&b, "\nEventId        %s\nCorrelationId  %s\n", r.EventID, r.CorrelationID)
	fmt.Fprintf(&b, "\ncanonical event (the queue message body):\n%s\n", indent(r.Event))

	b.WriteString("\nworker:\n")
	if r.RoutingErr != nil {
		fmt.Fprintf(&b, "  would not take the event: %v\n", r.RoutingErr)
	} else {
		writeRouting(&b, r)
	}
	b.WriteString("\nNothing was sent: explain calls no downstream and queues nothing.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRouting(b *strings.Builder, r *Report) {
	ex := r.Routing
	if ex.LoopGuard != "" {
		fmt.Fprintf(b, "  loop guard: skips the event (%s): it completes without work and no route runs\n", ex.LoopGuard)
	} else {
		b.WriteString("  loop guard: passes\n")
	}
	matched := 0
	for _, route := range ex.Routes {
		if !route.Matches {
			fmt.Fprintf(b, "  route %s: does not match: %s\n", route.Name, route.Mismatch)
			continue
		}
		matched++
		fmt.Fprintf(b, "  route %s: matches\n", route.Name)
		if ex.LoopGuard != "" {
			continue
		}
		for _, s := range route.Steps {
			fmt.Fprintf(b, "    step %s (%s, timeout %s)\n", s.Name, s.Type, s.Timeout)
			switch {
			case s.Fails != "":
				fmt.Fprintf(b, "      would fail: %s\n", s.Fails)
			case s.Skip != "":
				fmt.Fprintf(b, "      skipped: %s\n", s.Skip)
			}
			if s.Target != "" {
				fmt.Fprintf(b, "      %s\n", s.Target)
			}
		}
	}
	if matched == 0 && ex.LoopGuard == "" {
		b.WriteString("  no route matches: the event completes without work\n")
	}
}

// indent pretty-prints a JSON document; anything else is shown as it is.
func indent(raw []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return string(raw)
	}
	return out.String()
}
