package main

// Per-record order through the real binary: each record's events reach the ERP one at a time, in
// the order the intake accepted them, across transient failures, dead letters, resubmits and a
// kill -9; other records run side by side.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/functions/worker"
)

// erpCall is one call the ordered ERP double answered.
type erpCall struct {
	eventID, record, timestamp string
	start, end                 time.Time
	status                     int
}

// orderedERP is an ERP double that records when each call for each record started and ended,
// and answers what fail says (0: 200).
type orderedERP struct {
	mu       sync.Mutex
	calls    []erpCall
	delay    map[string]time.Duration // by EventId; default for all under ""
	fail     func(eventID string, call int) int
	perEvent map[string]int
	srv      *httptest.Server
}

func newOrderedERP(t *testing.T) *orderedERP {
	e := &orderedERP{delay: map[string]time.Duration{}, perEvent: map[string]int{}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ EventId, RecordId string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &ev)
		c := erpCall{eventID: ev.EventId, record: strings.ToLower(ev.RecordId),
			timestamp: r.Header.Get(worker.HeaderEventTimestamp), start: time.Now(), status: http.StatusOK}
		e.mu.Lock()
		e.perEvent[ev.EventId]++
		n := e.perEvent[ev.EventId]
		d, ok := e.delay[ev.EventId]
		if !ok {
			d = e.delay[""]
		}
		e.mu.Unlock()
		time.Sleep(d)
		c.end = time.Now()
		e.mu.Lock()
		// The answer is decided when it is sent, after the delay: a test learns an event's id
		// from its 202, by when the worker may already be calling.
		if e.fail != nil {
			if s := e.fail(ev.EventId, n); s != 0 {
				c.status = s
			}
		}
		e.calls = append(e.calls, c)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c.status)
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *orderedERP) setDelay(eventID string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.delay[eventID] = d
}

func (e *orderedERP) answer(fail func(eventID string, call int) int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fail = fail
}

// of returns the calls for record, in the order they started.
func (e *orderedERP) of(record string) []erpCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []erpCall
	for _, c := range e.calls {
		if c.record == strings.ToLower(record) {
			out = append(out, c)
		}
	}
	// Calls are appended when they end; a record's calls never overlap, so end order is start order.
	return out
}

func (e *orderedERP) succeeded(eventID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.calls {
		if c.eventID == eventID && c.status == http.StatusOK {
			return true
		}
	}
	return false
}

// recordEvent is the shipped opportunity sample as an update of record, with a fresh operation.
func recordEvent(t testing.TB, record string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "samples", "opportunity-update.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct{ PrimaryEntityId, OperationId string }
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	// Dataverse spells a GUID in either case: replace both spellings.
	s := regexp.MustCompile("(?i)"+regexp.QuoteMeta(top.PrimaryEntityId)).ReplaceAllString(string(raw), record)
	return []byte(regexp.MustCompile("(?i)"+regexp.QuoteMeta(top.OperationId)).ReplaceAllString(s, uuid.NewString()))
}

func orderEnv(t *testing.T, erp *orderedERP, extra ...string) []string {
	credit := newDownstream(t, `{"score":700}`)
	return baseEnv(append([]string{
		"DVRELAY_CREDIT_URL=" + credit.srv.URL,
		"DVRELAY_ERP_URL=" + erp.srv.URL,
		"DVRELAY_LOCK_DURATION=5s",
		"DVRELAY_RETRY_DELAY=1s",
		"DVRELAY_WORKER_CONCURRENCY=16",
	}, extra...)...)
}

// checkInOrder fails unless the calls for record never overlap and the last call of each event
// comes before the first call of the next event accepted, with every accepted event in them.
func checkInOrder(t *testing.T, erp *orderedERP, record string, accepted []string) {
	t.Helper()
	calls := erp.of(record)
	pos := map[string]int{}
	for i, id := range accepted {
		pos[id] = i
	}
	last := -1
	for i, c := range calls {
		p, ok := pos[c.eventID]
		if !ok {
			continue
		}
		if p < last {
			t.Errorf("record %s: event #%d (%s) reached the ERP after event #%d: calls %s", record, p, c.eventID, last, describeCalls(calls, pos))
		}
		last = max(last, p)
		if i > 0 && c.start.Before(calls[i-1].end) {
			t.Errorf("record %s: the call for #%d started %v before the call for #%d was answered", record, p,
				calls[i-1].end.Sub(c.start), pos[calls[i-1].eventID])
		}
	}
	if last != len(accepted)-1 {
		t.Errorf("record %s: calls %s, want every accepted event", record, describeCalls(calls, pos))
	}
}

func describeCalls(calls []erpCall, pos map[string]int) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "#%d:%d ", pos[c.eventID], c.status)
	}
	return b.String()
}

func TestServe_runs_a_records_events_one_at_a_time_in_accepted_order_and_others_side_by_side(t *testing.T) {
	erp := newOrderedERP(t)
	erp.setDelay("", 200*time.Millisecond)
	p := startServe(t, t.TempDir(), freeAddr(t), orderEnv(t, erp))

	hot := uuid.NewString()
	others := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	var hotIDs []string
	for i := range 6 {
		hotIDs = append(hotIDs, mustAccept(t, p.addr, recordEvent(t, hot)).EventID)
		if i < len(others) {
			mustAccept(t, p.addr, recordEvent(t, others[i]))
		}
	}
	eventually(t, "every event of the record at the ERP", func() bool { return erp.succeeded(hotIDs[len(hotIDs)-1]) })
	checkInOrder(t, erp, hot, hotIDs)

	// The other records did not wait for the busy one: each was answered before its last event.
	hotCalls := erp.of(hot)
	for _, o := range others {
		calls := erp.of(o)
		if len(calls) != 1 || !calls[0].end.Before(hotCalls[len(hotCalls)-1].start) {
			t.Errorf("record %s waited for another record's events: %+v", o, calls)
		}
	}
	if c := hotCalls[0]; c.timestamp == "" {
		t.Errorf("the ERP call carries no %s header: a downstream cannot refuse a stale update", worker.HeaderEventTimestamp)
	}
}

func TestServe_keeps_a_transiently_failing_event_ahead_of_its_records_next_while_others_go_on(t *testing.T) {
	erp := newOrderedERP(t)
	p := startServe(t, t.TempDir(), freeAddr(t), orderEnv(t, erp))

	record, other := uuid.NewString(), uuid.NewString()
	var failing string
	var mu sync.Mutex
	erp.answer(func(id string, call int) int {
		mu.Lock()
		defer mu.Unlock()
		if id == failing && call <= 4 { // the quick tries, then the first retry later
			return http.StatusServiceUnavailable
		}
		return 0
	})
	// Long enough for the test to learn the first event's id before its first call is answered.
	erp.setDelay("", 100*time.Millisecond)
	first := mustAccept(t, p.addr, recordEvent(t, record)).EventID
	mu.Lock()
	failing = first
	mu.Unlock()
	second := mustAccept(t, p.addr, recordEvent(t, record)).EventID
	otherID := mustAccept(t, p.addr, recordEvent(t, other)).EventID

	eventually(t, "the other record at the ERP", func() bool { return erp.succeeded(otherID) })
	if erp.succeeded(second) {
		t.Fatalf("the record's second event overtook its first, which is waiting for a retry")
	}
	eventually(t, "both events of the record at the ERP", func() bool { return erp.succeeded(second) })
	checkInOrder(t, erp, record, []string{first, second})
	if calls := erp.of(record); len(calls) < 5 {
		t.Errorf("record calls %d, want the failing event's 4 failures, its success and the next event", len(calls))
	}
}

func TestServe_releases_a_record_when_its_event_is_dead_lettered_and_a_resubmit_joins_the_tail(t *testing.T) {
	erp := newOrderedERP(t)
	dir := t.TempDir()
	p := startServe(t, dir, freeAddr(t), orderEnv(t, erp))

	record := uuid.NewString()
	var (
		mu  sync.Mutex
		bad string
	)
	erp.answer(func(id string, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if id == bad {
			return http.StatusUnprocessableEntity
		}
		return 0
	})
	// The ERP is slow, so the first event's call is still unanswered when the test learns its id.
	erp.setDelay("", 300*time.Millisecond)
	first := mustAccept(t, p.addr, recordEvent(t, record)).EventID
	mu.Lock()
	bad = first
	mu.Unlock()
	second := mustAccept(t, p.addr, recordEvent(t, record)).EventID

	eventually(t, "the record's next event after the dead letter", func() bool { return erp.succeeded(second) })
	eventually(t, "the dead letter", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })

	// A third event is at the ERP (slowly) when support resubmits the first: the resubmitted
	// event joins the tail and waits for it. The delay is set before the post: the worker, waiting,
	// has the event the moment it is queued.
	mu.Lock()
	bad = ""
	mu.Unlock()
	erp.setDelay("", 2*time.Second)
	third := mustAccept(t, p.addr, recordEvent(t, record)).EventID
	eventually(t, "the third event at the ERP", func() bool {
		erp.mu.Lock()
		defer erp.mu.Unlock()
		return erp.perEvent[third] > 0
	})
	erp.setDelay("", 300*time.Millisecond)
	out, err := exec.Command(binaryPath, "dlq", "list", "--data-dir", dir, "--addr", p.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "opportunity/"+record) {
		t.Errorf("dlq list does not name the record's order key opportunity/%s: %v\n%s", record, err, out)
	}
	out, err = exec.Command(binaryPath, "dlq", "resubmit", "--dry-run", "--data-dir", dir, "--addr", p.addr, "--all").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "older data over newer") || !strings.Contains(string(out), second) {
		t.Errorf("dlq resubmit --dry-run did not warn that the record's later event %s completed since: %v\n%s", second, err, out)
	}
	out, err = exec.Command(binaryPath, "dlq", "resubmit", "--data-dir", dir, "--addr", p.addr, "--all").CombinedOutput()
	if err != nil {
		t.Fatalf("dlq resubmit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "older data over newer") {
		t.Errorf("dlq resubmit did not warn that a later event of the record completed since:\n%s", out)
	}
	eventually(t, "the resubmitted event at the ERP", func() bool { return erp.succeeded(first) })
	calls := erp.of(record)
	pos := map[string]int{first: 1, second: 2, third: 3}
	if got, want := describeCalls(calls, pos), "#1:422 #2:200 #3:200 #1:200 "; got != want {
		t.Errorf("the record's calls were %s, want %s: the dead letter releases the record and the resubmit joins its tail", got, want)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].start.Before(calls[i-1].end) {
			t.Errorf("call %d of the record overlapped the one before", i)
		}
	}
}

func TestServe_keeps_each_records_order_across_SIGKILL_and_restart(t *testing.T) {
	erp := newOrderedERP(t)
	erp.setDelay("", 100*time.Millisecond)
	dir, addr := t.TempDir(), freeAddr(t)
	env := orderEnv(t, erp)
	p := startServe(t, dir, addr, env)

	records := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	accepted := map[string][]string{}
	for range 8 {
		for _, r := range records {
			accepted[r] = append(accepted[r], mustAccept(t, p.addr, recordEvent(t, r)).EventID)
		}
	}
	eventually(t, "some events at the ERP", func() bool { return len(erp.of(records[0])) >= 3 })
	p.stop(t, syscall.SIGKILL)

	startServe(t, dir, addr, env)
	for _, r := range records {
		ids := accepted[r]
		eventually(t, "every event of record "+r, func() bool { return erp.succeeded(ids[len(ids)-1]) })
	}
	for _, r := range records {
		checkInOrderAllowingRepeat(t, erp, r, accepted[r])
	}
}

// checkInOrderAllowingRepeat is checkInOrder for a run with a kill -9 in it: the event in flight
// when the process died may reach the ERP again (at least once), and nothing else may move.
func checkInOrderAllowingRepeat(t *testing.T, erp *orderedERP, record string, accepted []string) {
	t.Helper()
	calls := erp.of(record)
	pos := map[string]int{}
	for i, id := range accepted {
		pos[id] = i
	}
	last := -1
	for _, c := range calls {
		p := pos[c.eventID]
		if p < last {
			t.Errorf("record %s: event #%d reached the ERP after event #%d: %s", record, p, last, describeCalls(calls, pos))
		}
		last = max(last, p)
	}
}
