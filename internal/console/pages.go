package console

import (
	"context"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/lookback"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/support"
)

// funcs are the templates' helpers. None of them returns markup built from event data.
func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return humanDuration(now().Sub(t)) + " ago"
		},
		"dur":      humanDuration,
		"inc":      func(i int) int { return i + 1 },
		"ms":       func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) },
		"kindText": kindText,
		"kindCls":  kindClass,
		"baseID":   queue.BaseID,
		"dash": func(s string) string {
			if s == "" {
				return "–"
			}
			return s
		},
	}
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}

func kindText(kind string) string {
	if kind == queue.HistRetrying {
		return "retry scheduled"
	}
	return kind
}

func kindClass(kind string) string {
	switch kind {
	case queue.HistCompleted:
		return "ok"
	case queue.HistRetrying:
		return "warn"
	case queue.HistDeadLettered:
		return "bad"
	case queue.HistAccepted:
		return "info"
	}
	return "muted"
}

type overviewData struct {
	O          support.Overview
	HourChart  template.HTML
	DayChart   template.HTML
	Totals     []total
	Reasons    []barRow
	Oldest     string
	NoHistory  bool
	NoStats    bool
	QueryFile  string
	ReasonLink map[string]string
}

type total struct {
	Label, Class, ID string
	Hour, Day        int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	o, err := s.cfg.Support.Overview(r.Context())
	if err != nil {
		s.failed(w, r, ss, "overview", err)
		return
	}
	d := overviewData{O: o, NoHistory: o.Hour == nil, NoStats: o.Stats == nil, QueryFile: support.HistoryQuery}
	if o.Hour != nil {
		d.HourChart = activityChart(o.Hour, "Events per minute, last hour", "15:04", 10)
		d.DayChart = activityChart(o.Day, "Events per hour, last day", "15:04", 4)
		for _, k := range []struct{ kind, label, class string }{
			{queue.HistAccepted, "accepted", "info"}, {queue.HistCompleted, "completed", "ok"},
			{queue.HistRetrying, "retries scheduled", "warn"}, {queue.HistDeadLettered, "dead-lettered", "bad"},
		} {
			d.Totals = append(d.Totals, total{Label: k.label, Class: k.class, ID: k.kind,
				Hour: o.Hour.Total(k.kind), Day: o.Day.Total(k.kind)})
		}
	}
	if o.Stats != nil && o.Stats.OldestQueuedAge > 0 {
		d.Oldest = humanDuration(o.Stats.OldestQueuedAge)
	}
	labels, counts := make([]string, 0, len(o.Reasons)), make([]int, 0, len(o.Reasons))
	for _, rc := range o.Reasons {
		labels, counts = append(labels, rc.Reason), append(counts, rc.Count)
	}
	d.Reasons = barRows(labels, counts)
	s.render(w, r, http.StatusOK, "overview", ss, pageData{Title: "Overview", Nav: "overview", Page: d})
}

// listPage bounds the dead letters one page lists.
const listPage = 100

type deadLettersData struct {
	Filter filterForm
	Groups []queue.DeadLetterGroup
	Total  int
	Items  []support.DeadLetter
	Next   template.URL // query of the next page, encoded; "" on the last
	Error  string
}

// filterForm is the dead-letter filter as typed, and as read.
type filterForm struct {
	Reason, Entity, Since string
	f                     queue.DeadLetterFilter
}

// Query is the filter as URL parameters, for links that keep it. It is encoded here, so the
// template takes it as a URL part rather than escape its = and & again.
func (f filterForm) Query() template.URL {
	v := url.Values{}
	for k, s := range map[string]string{"reason": f.Reason, "entity": f.Entity, "since": f.Since} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return template.URL(v.Encode()) // every value encoded by url.Values
}

// Active reports whether the filter narrows anything.
func (f filterForm) Active() bool { return f.Reason != "" || f.Entity != "" || f.Since != "" }

func (s *Server) readFilter(r *http.Request) (filterForm, string) {
	ff := filterForm{Reason: trimmed(r, "reason"), Entity: trimmed(r, "entity"), Since: trimmed(r, "since")}
	ff.f = queue.DeadLetterFilter{Reason: ff.Reason, Entity: ff.Entity}
	if ff.Since != "" {
		t, err := lookback.Parse(ff.Since, s.cfg.Now())
		if err != nil {
			return ff, fmt.Sprintf("“since” %v; it was left out.", err)
		}
		ff.f.Since = t
	}
	return ff, ""
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, ss *session) {
	ff, bad := s.readFilter(r)
	d := deadLettersData{Filter: ff, Error: bad}
	groups, err := s.cfg.Support.Groups(r.Context(), ff.f)
	if err != nil {
		s.failed(w, r, ss, "group dead letters", err)
		return
	}
	d.Groups = groups
	for _, g := range groups {
		d.Total += g.Count
	}
	f := ff.f
	f.Limit = listPage
	if after, err := strconv.ParseInt(r.FormValue("after"), 10, 64); err == nil && after > 0 {
		f.AfterSeq = after
	}
	if d.Items, err = s.cfg.Support.List(r.Context(), f); err != nil {
		s.failed(w, r, ss, "list dead letters", err)
		return
	}
	if len(d.Items) == listPage {
		q := string(ff.Query())
		if q != "" {
			q += "&"
		}
		d.Next = template.URL(q + "after=" + strconv.FormatInt(d.Items[len(d.Items)-1].SequenceNumber, 10)) // encoded above
	}
	s.render(w, r, http.StatusOK, "deadletters", ss, pageData{Title: "Dead letters", Nav: "deadletters", Page: d})
}

// previewShown bounds the rows a preview lists; the count is always whole.
const previewShown = 500

type previewData struct {
	Action    string // resubmit or purge
	Event     string // the event page the preview came from, to go back to
	Filter    filterForm
	ByFilter  bool
	Seqs      string // what the confirmation acts on, comma-separated
	Targets   []support.Target
	Count     int
	More      int
	Missing   []int64
	NewerDone map[int64]string
}

// preview lists what a resubmit or purge would act on, and offers the confirmation form. It
// changes nothing, so it is a GET; the confirmation is the POST that carries the CSRF token.
func (s *Server) preview(w http.ResponseWriter, r *http.Request, ss *session) {
	action := r.FormValue("action")
	if action != "resubmit" && action != "purge" {
		s.render(w, r, http.StatusBadRequest, "message", ss, pageData{Title: "Nothing to preview",
			Message: "Choose Resubmit or Purge on the dead letters page."})
		return
	}
	ff, bad := s.readFilter(r)
	sel, err := selectionOf(r, ff)
	if err != nil || bad != "" {
		s.render(w, r, http.StatusBadRequest, "message", ss, pageData{Title: "Nothing selected", Message: cmpOr(bad, errText(err))})
		return
	}
	p, err := s.cfg.Support.Preview(r.Context(), sel)
	if err != nil {
		s.failed(w, r, ss, "preview", err)
		return
	}
	d := previewData{Action: action, Event: trimmed(r, "event"), Filter: ff, ByFilter: len(sel.Seqs) == 0, Count: len(p.Targets), Missing: p.Missing, NewerDone: p.NewerDone}
	seqs := make([]string, 0, len(p.Targets))
	for _, t := range p.Targets {
		seqs = append(seqs, strconv.FormatInt(t.Seq, 10))
	}
	d.Seqs = strings.Join(seqs, ",")
	d.Targets = p.Targets[:min(len(p.Targets), previewShown)]
	d.More = len(p.Targets) - len(d.Targets)
	s.render(w, r, http.StatusOK, "preview", ss, pageData{Title: "Preview: " + action, Nav: "deadletters", Page: d})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// selectionOf reads a selection: the sequence numbers ticked (seq, repeated, or seqs,
// comma-separated), or with all=1 everything the filter selects.
func selectionOf(r *http.Request, ff filterForm) (support.Selection, error) {
	var raw []string
	raw = append(raw, r.Form["seq"]...)
	if v := r.FormValue("seqs"); v != "" {
		raw = append(raw, strings.Split(v, ",")...)
	}
	seen := map[int64]bool{}
	var seqs []int64
	for _, v := range raw {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 {
			return support.Selection{}, fmt.Errorf("%q is not a sequence number", v)
		}
		if !seen[n] {
			seen[n] = true
			seqs = append(seqs, n)
		}
	}
	if len(seqs) > 0 {
		return support.Selection{Seqs: seqs}, nil
	}
	if r.FormValue("all") == "1" {
		return support.Selection{Filter: ff.f}, nil
	}
	return support.Selection{}, fmt.Errorf("no dead letter was selected: tick some, or use “everything this filter matches”")
}

func (s *Server) resubmit(w http.ResponseWriter, r *http.Request, ss *session) {
	s.act(w, r, ss, "resubmit", s.cfg.Support.Resubmit)
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request, ss *session) {
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, http.StatusBadRequest, "message", ss, pageData{Title: "Not purged",
			Message: "Purging cannot be undone, so the preview asks you to tick the confirmation first. Nothing was deleted."})
		return
	}
	s.act(w, r, ss, "purge", s.cfg.Support.Purge)
}

// act runs a confirmed resubmit or purge on the sequence numbers the preview listed, then shows
// the dead letters with what happened.
func (s *Server) act(w http.ResponseWriter, r *http.Request, ss *session, what string,
	do func(ctx context.Context, sel support.Selection, from support.Origin) (support.Summary, error)) {
	ff, _ := s.readFilter(r)
	sel, err := selectionOf(r, ff)
	if err != nil || len(sel.Seqs) == 0 {
		s.render(w, r, http.StatusBadRequest, "message", ss, pageData{Title: "Nothing selected", Message: cmpOr(errText(err), "nothing selected")})
		return
	}
	sel.Previewed = r.PostFormValue("byfilter") == "1"
	sum, err := do(r.Context(), sel, origin(r))
	past := map[string]string{"resubmit": "Resubmitted", "purge": "Purged"}[what]
	msg := fmt.Sprintf("%s %d; skipped %d (no longer dead-lettered); failed %d.", past, sum.Done, sum.Skipped, sum.Failed)
	if err != nil {
		msg += " The handler's log says why the failures failed; they are still dead-lettered."
	}
	s.sessions.setFlash(ss.token, msg)
	target := "/console/deadletters"
	if q := ff.Query(); q != "" {
		target += "?" + string(q)
	}
	if ev := r.PostFormValue("event"); ev != "" {
		target = "/console/event?" + url.Values{"id": {ev}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

type eventData struct {
	E           support.Event
	Head        support.DeadLetter // the latest dead letter, or what the timeline knows
	Found       bool
	Body        *node
	BodyText    string
	Props       []prop
	TraceID     string
	RecordURL   string
	QueryFile   string
	Description string
}

type prop struct{ Key, Value string }

func (s *Server) event(w http.ResponseWriter, r *http.Request, ss *session) {
	id := trimmed(r, "id")
	if id == "" {
		http.Redirect(w, r, "/console/deadletters", http.StatusSeeOther)
		return
	}
	ev, err := s.cfg.Support.Event(r.Context(), id)
	if err != nil {
		s.failed(w, r, ss, "read event", err)
		return
	}
	d := eventData{E: ev, QueryFile: support.HistoryQuery, Found: len(ev.Parked) > 0 || len(ev.Timeline) > 0}
	if len(ev.Parked) > 0 {
		p := ev.Parked[len(ev.Parked)-1]
		d.Head = p.DeadLetter
		if tree, err := jsonTree(p.Body); err == nil {
			d.Body = tree
		} else {
			d.BodyText = prettyJSON(p.Body)
		}
		for _, k := range slices.Sorted(maps.Keys(p.Properties)) {
			v := fmt.Sprint(p.Properties[k])
			d.Props = append(d.Props, prop{k, v})
			if strings.EqualFold(k, "traceparent") || strings.EqualFold(k, "Diagnostic-Id") {
				if parts := strings.Split(v, "-"); len(parts) == 4 {
					d.TraceID = parts[1]
				}
			}
		}
	} else if len(ev.Timeline) > 0 {
		first := ev.Timeline[0]
		d.Head = support.DeadLetter{EventID: id, EventName: first.EventName, Entity: first.Entity,
			RecordID: first.RecordID, CorrelationID: first.CorrelationID}
	}
	for _, e := range ev.Timeline {
		if d.Head.RecordID == "" {
			d.Head.RecordID = e.RecordID
		}
	}
	d.RecordURL = support.RecordURL(s.cfg.DataverseURL, d.Head.Entity, d.Head.RecordID)
	status := http.StatusOK
	if !d.Found {
		status = http.StatusNotFound
	}
	s.render(w, r, status, "event", ss, pageData{Title: "Event " + id, Query: id, Page: d})
}

type recordData struct {
	R         support.Record
	Searched  bool
	RecordURL string
	QueryFile string
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, ss *session) {
	q := trimmed(r, "q")
	rec, err := s.cfg.Support.Record(r.Context(), q)
	if err != nil {
		s.failed(w, r, ss, "search", err)
		return
	}
	d := recordData{R: rec, Searched: q != "", QueryFile: support.HistoryQuery}
	if len(rec.Events) > 0 {
		d.RecordURL = support.RecordURL(s.cfg.DataverseURL, rec.Events[0].Entity, rec.Events[0].RecordID)
	}
	s.render(w, r, http.StatusOK, "record", ss, pageData{Title: "Search " + rec.Key, Nav: "record", Query: q, Page: d})
}
