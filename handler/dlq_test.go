package main

// `handler dlq` against the embedded queue, for real, through run(): a serve in this process on
// a port of its own, an ERP double that refuses an event, and the support commands a person runs.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
	"github.com/dvrelay/dvrelay/internal/transport/admin"
)

// erpReason is what the ERP double says when it refuses an event.
const erpReason = `{"message":"customer account 4711 is blocked in ERP"}`

// erpDouble answers like the ERP: 400 with erpReason while refusing, 200 otherwise. It records
// the X-Correlation-ID of every call it accepted, by Idempotency-Key (the EventId).
type erpDouble struct {
	mu       sync.Mutex
	refusing bool
	accepted map[string][]string // EventId → correlation ids of the accepted calls
	srv      *httptest.Server
}

func newERPDouble(t *testing.T) *erpDouble {
	e := &erpDouble{refusing: true, accepted: map[string][]string{}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if e.refusing {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, erpReason)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		e.accepted[key] = append(e.accepted[key], r.Header.Get("X-Correlation-ID"))
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *erpDouble) fix() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refusing = false
}

func (e *erpDouble) calls(eventID string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.accepted[eventID]...)
}

// dlqEnv is the environment of a serve (and of the dlq commands next to it) on the shipped
// routes, with a credit double that scores and the ERP double.
func dlqEnv(t *testing.T, erp *erpDouble) func(string) (string, bool) {
	credit := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"score":640}`)
	}))
	t.Cleanup(credit.Close)
	return mapEnv(map[string]string{
		"DVRELAY_ROUTES":        filepath.Join(appRoot, "routes.json"),
		"DVRELAY_CREDIT_URL":    credit.URL,
		"DVRELAY_ERP_URL":       erp.srv.URL,
		"DVRELAY_LOCK_DURATION": "5s",
	})
}

// inProcessServe is `handler serve` run through run() in this process.
type inProcessServe struct {
	addr string
	log  *watchedLog
	stop func() int
}

func startInProcessServe(t *testing.T, dir, addr string, env func(string) (string, bool)) *inProcessServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &watchedLog{listening: make(chan struct{})}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	given := env
	env = func(name string) (string, bool) {
		if v, ok := given(name); ok || name != "DVRELAY_CONSOLE_ADDR" {
			return v, ok
		}
		return "off", true // as baseEnv: serves run side by side, and each console would want the default port
	}
	go func() { done <- run(ctx, []string{"serve", "--addr", addr, "--data-dir", dir}, env, log, &stderr) }()
	var once sync.Once
	code := 0
	s := &inProcessServe{addr: addr, log: log, stop: func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}}
	t.Cleanup(func() { s.stop() })
	select {
	case <-log.listening:
	case code := <-done:
		t.Fatalf("serve exited %d at start\n%s%s", code, log.String(), stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not listen\n%s", log.String())
	}
	return s
}

// dlqResult is one `handler dlq` run.
type dlqResult struct {
	code           int
	stdout, stderr string
}

func runDLQCommand(t *testing.T, env func(string) (string, bool), args ...string) dlqResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), append([]string{"dlq"}, args...), env, &stdout, &stderr)
	return dlqResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (r dlqResult) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr
}

func TestDLQ_finds_a_serve_on_another_port_shows_the_ERP_refusal_and_resubmits_it_once(t *testing.T) {
	erp := newERPDouble(t)
	env := dlqEnv(t, erp)
	dir := t.TempDir()
	s := startInProcessServe(t, dir, freeAddr(t), env)

	a := mustAccept(t, s.addr, sampleEvent(t))
	eventually(t, "the dead letter", func() bool { return health(t, s.addr)["deadLettered"] == float64(1) })

	// No --addr: dlq finds the serve that owns the directory through the address it recorded.
	list := runDLQCommand(t, env, "list", "--data-dir", dir)
	if list.code != 0 || !strings.Contains(list.stderr, "asking it at http://"+s.addr) {
		t.Fatalf("dlq list did not ask the serve at %s:\n%s", s.addr, list)
	}
	for _, want := range []string{"PermanentFailure", "OpportunityUpdated", a.CorrelationID,
		"erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request", "customer account 4711 is blocked in ERP"} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("dlq list does not show %q:\n%s", want, list)
		}
	}
	if strings.Contains(list.stdout, "route credit-check step erp-sync") {
		t.Errorf("dlq list repeats where the failure happened instead of showing the cause:\n%s", list)
	}

	asJSON := runDLQCommand(t, env, "list", "--json", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(asJSON.stdout), "\n")
	var d admin.DeadLetter
	if asJSON.code != 0 || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &d) != nil {
		t.Fatalf("dlq list --json, want one object on one line:\n%s", asJSON)
	}
	if d.EventID != a.EventID || d.Reason != "PermanentFailure" || d.FailedStep != "erp-sync" || d.CorrelationID != a.CorrelationID {
		t.Errorf("dlq list --json = %+v, want event %s parked by erp-sync", d, a.EventID)
	}

	seq := strconv.FormatInt(d.SequenceNumber, 10)
	for _, ref := range []string{seq, a.EventID} {
		show := runDLQCommand(t, env, "show", ref, "--data-dir", dir) // the flag after the operand
		for _, want := range []string{"dead letter " + seq, d.Description, `"EventId": "` + a.EventID + `"`,
			"history of event " + a.EventID, "dead-lettered (seq " + seq + ")", "FailedStep", "erp-sync",
			"customer account 4711 is blocked in ERP"} {
			if show.code != 0 || !strings.Contains(show.stdout, want) {
				t.Errorf("dlq show %s does not show %q:\n%s", ref, want, show)
			}
		}
	}

	dry := runDLQCommand(t, env, "resubmit", "--reason", "permanentfailure", "--dry-run", "--data-dir", dir)
	if dry.code != 0 || !strings.Contains(dry.stdout, "would resubmit "+seq) || !strings.Contains(dry.stdout, "nothing was sent") {
		t.Errorf("dlq resubmit --dry-run:\n%s", dry)
	}
	if h := health(t, s.addr); h["deadLettered"] != float64(1) || h["queued"] != float64(0) {
		t.Errorf("a dry run changed the queue: %v", h)
	}

	erp.fix()
	resubmit := runDLQCommand(t, env, "resubmit", seq, "--data-dir", dir) // the flag after the operand
	if resubmit.code != 0 || !strings.Contains(resubmit.stdout, "resubmitted 1, skipped 0, failed 0") {
		t.Fatalf("dlq resubmit %s:\n%s", seq, resubmit)
	}
	eventually(t, "the resubmitted event at the ERP", func() bool { return len(erp.calls(a.EventID)) == 1 })
	eventually(t, "an empty queue", func() bool {
		h := health(t, s.addr)
		return h["queued"] == float64(0) && h["scheduled"] == float64(0)
	})
	if calls := erp.calls(a.EventID); len(calls) != 1 || calls[0] != a.CorrelationID {
		t.Errorf("the ERP got event %s with correlation ids %q, want once with %s", a.EventID, calls, a.CorrelationID)
	}
	if h := health(t, s.addr); h["deadLettered"] != float64(0) {
		t.Errorf("after the resubmit health = %v", h)
	}
}

func TestDLQ_purge_refuses_without_yes_and_then_empties_the_dead_letters(t *testing.T) {
	erp := newERPDouble(t)
	env := dlqEnv(t, erp)
	dir := t.TempDir()
	s := startInProcessServe(t, dir, freeAddr(t), env)
	mustAccept(t, s.addr, sampleEvent(t))
	mustAccept(t, s.addr, sampleEvent(t))
	eventually(t, "two dead letters", func() bool { return health(t, s.addr)["deadLettered"] == float64(2) })

	refused := runDLQCommand(t, env, "purge", "--reason", "PermanentFailure", "--data-dir", dir)
	if refused.code != 2 || !strings.Contains(refused.stderr, "--yes") || !strings.Contains(refused.stdout, "would remove 2 dead letters") {
		t.Errorf("dlq purge without --yes, want exit 2 naming --yes and what it would remove:\n%s", refused)
	}
	if h := health(t, s.addr); h["deadLettered"] != float64(2) {
		t.Fatalf("a purge without --yes removed something: %v", h)
	}

	// While serve owns the data dir, the purge goes through it.
	purged := runDLQCommand(t, env, "purge", "--reason", "PermanentFailure", "--yes", "--data-dir", dir)
	if purged.code != 0 || !strings.Contains(purged.stdout, "purged 2, skipped 0, failed 0") {
		t.Errorf("dlq purge --yes:\n%s", purged)
	}
	if h := health(t, s.addr); h["deadLettered"] != float64(0) {
		t.Errorf("after the purge health = %v", h)
	}
	if list := runDLQCommand(t, env, "list", "--data-dir", dir); list.code != 0 || !strings.Contains(list.stdout, "no dead letters") {
		t.Errorf("dlq list after the purge:\n%s", list)
	}
}

func TestDLQ_works_on_the_data_dir_itself_once_serve_has_stopped(t *testing.T) {
	erp := newERPDouble(t)
	env := dlqEnv(t, erp)
	dir := t.TempDir()
	s := startInProcessServe(t, dir, freeAddr(t), env)
	mustAccept(t, s.addr, sampleEvent(t))
	eventually(t, "the dead letter", func() bool { return health(t, s.addr)["deadLettered"] == float64(1) })
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, s.log.String())
	}
	if _, ok, err := local.RecordedOwner(dir); ok || err != nil {
		t.Errorf("serve left its address recorded after a clean shutdown (%v, %v)", ok, err)
	}

	list := runDLQCommand(t, env, "list", "--data-dir", dir)
	if list.code != 0 || !strings.Contains(list.stdout, "PermanentFailure") || strings.Contains(list.stderr, "asking") {
		t.Fatalf("dlq list on the stopped serve's data dir:\n%s", list)
	}
	purge := runDLQCommand(t, env, "purge", "--older-than", "0s", "--yes", "--data-dir", dir)
	if purge.code != 0 || !strings.Contains(purge.stdout, "purged 1, skipped 0, failed 0") {
		t.Errorf("dlq purge --older-than 0s --yes:\n%s", purge)
	}
}

func TestDLQ_on_a_missing_data_dir_says_where_it_looked_and_creates_nothing(t *testing.T) {
	env := mapEnv(nil)
	cwd := t.TempDir()
	t.Chdir(cwd)
	for _, args := range [][]string{
		{"list"}, // the default, ./.dvrelay
		{"show", "1", "--data-dir", "elsewhere"},
		{"resubmit", "--all", "--data-dir", "elsewhere"},
		{"purge", "1", "--yes", "--data-dir", "elsewhere"},
	} {
		r := runDLQCommand(t, env, args...)
		want := filepath.Join(cwd, ".dvrelay")
		if len(args) > 1 {
			want = filepath.Join(cwd, "elsewhere")
		}
		if r.code != 2 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, "--data-dir") {
			t.Errorf("dlq %q: want exit 2 naming %s and how to name the right one:\n%s", args, want, r)
		}
	}
	if entries, err := os.ReadDir(cwd); err != nil || len(entries) != 0 {
		t.Errorf("dlq created %v (%v)", entries, err)
	}

	empty := t.TempDir() // a directory, but no queue in it
	if r := runDLQCommand(t, env, "list", "--data-dir", empty); r.code != 2 || !strings.Contains(r.stderr, "holds no embedded queue") {
		t.Errorf("dlq list on an empty directory:\n%s", r)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("dlq created %v in an empty directory", entries)
	}
}

// parkedDir is a data dir holding the dead letters of events ids, with reason and entity as
// given, dead-lettered an hour apart ending now, and no process owning it.
func parkedDir(t *testing.T, parked ...[3]string) string {
	t.Helper()
	dir := t.TempDir()
	at := time.Now().Add(-time.Duration(len(parked)) * time.Hour)
	q, err := local.Open(t.Context(), dir, local.Options{Now: func() time.Time { return at }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parked {
		at = at.Add(time.Hour)
		m := &queue.Message{MessageID: p[0], CorrelationID: "corr-" + p[0], Subject: "OpportunityUpdated",
			Body: []byte(`{"EventId":"` + p[0] + `"}`), ApplicationProperties: map[string]any{queue.PropEntity: p[2]}}
		if err := q.DeadLetter(t.Context(), m, p[1], "route r step s: POST ${X}: 400 Bad Request"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDLQ_filters_select_the_same_dead_letters_for_list_resubmit_and_purge(t *testing.T) {
	dir := parkedDir(t,
		[3]string{"e1", "PermanentFailure", "opportunity"},
		[3]string{"e2", "InvalidMessage", "account"},
		[3]string{"e3", "PermanentFailure", "account"})
	env := mapEnv(nil)

	seqs := func(r dlqResult) []int64 {
		var out []int64
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var d admin.DeadLetter
			if json.Unmarshal([]byte(line), &d) == nil {
				out = append(out, d.SequenceNumber)
			}
		}
		return out
	}
	for _, tt := range []struct {
		args []string
		want []int64
	}{
		{[]string{"--reason", "PermanentFailure"}, []int64{1, 3}},
		{[]string{"--entity", "account"}, []int64{2, 3}},
		{[]string{"--entity", "account", "--reason", "PermanentFailure"}, []int64{3}},
		{[]string{"--since", "90m"}, []int64{2, 3}},
		{[]string{"--limit", "2"}, []int64{1, 2}},
	} {
		r := runDLQCommand(t, env, append([]string{"list", "--json", "--data-dir", dir}, tt.args...)...)
		if got := seqs(r); r.code != 0 || !slices.Equal(got, tt.want) {
			t.Errorf("dlq list %q = %v, want %v\n%s", tt.args, got, tt.want, r)
		}
	}

	dry := runDLQCommand(t, env, "resubmit", "--entity", "account", "--dry-run", "--data-dir", dir)
	if dry.code != 0 || !strings.Contains(dry.stdout, "would resubmit 2 ") || !strings.Contains(dry.stdout, "would resubmit 3 ") ||
		strings.Contains(dry.stdout, "would resubmit 1 ") {
		t.Errorf("dlq resubmit --entity account --dry-run:\n%s", dry)
	}
	purge := runDLQCommand(t, env, "purge", "--older-than", "90m", "--yes", "--data-dir", dir)
	if purge.code != 0 || !strings.Contains(purge.stdout, "purged 1, skipped 0, failed 0") {
		t.Errorf("dlq purge --older-than 90m --yes:\n%s", purge)
	}
	if r := runDLQCommand(t, env, "list", "--json", "--data-dir", dir); !slices.Equal(seqs(r), []int64{2, 3}) {
		t.Errorf("after the purge dlq list = %v, want the two newer ones left\n%s", seqs(r), r)
	}
}

func TestDLQ_a_named_dead_letter_that_is_not_there_fails_with_exit_1_and_the_rest_go_on(t *testing.T) {
	dir := parkedDir(t, [3]string{"e1", "PermanentFailure", "opportunity"})
	env := mapEnv(nil)
	r := runDLQCommand(t, env, "resubmit", "9", "1", "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "resubmitted 1, skipped 0, failed 1") ||
		!strings.Contains(r.stderr, "resubmit 9: no dead letter has this sequence number") || !strings.Contains(r.stderr, "'handler dlq list'") {
		t.Errorf("dlq resubmit 9 1:\n%s", r)
	}
	if r := runDLQCommand(t, env, "show", "9", "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "no dead letter has sequence number 9") {
		t.Errorf("dlq show 9:\n%s", r)
	}
}

func TestDLQ_usage_errors_exit_2_and_say_what_to_do(t *testing.T) {
	dir := parkedDir(t, [3]string{"e1", "PermanentFailure", "opportunity"})
	env := mapEnv(nil)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "say what to do"},
		{[]string{"drop"}, `unknown command "drop"`},
		{[]string{"list", "--reason"}, "flag needs an argument"},
		{[]string{"list", "--yes"}, "usage:"},
		{[]string{"list", "--since", "yesterday"}, "want a span back from now"},
		{[]string{"list", "7"}, "narrow the list with --reason"},
		{[]string{"show"}, "its sequence number or its EventId"},
		{[]string{"resubmit"}, "say which: sequence numbers"},
		{[]string{"resubmit", "1", "--all"}, "not both"},
		{[]string{"resubmit", "--all", "--reason", "PermanentFailure"}, "--all means every dead letter"},
		{[]string{"resubmit", "x1"}, `"x1" is not a sequence number`},
		{[]string{"purge"}, "say which: sequence numbers"},
		{[]string{"purge", "1"}, "Add --yes"},
		{[]string{"list", "--reason", "Permanent"}, `--reason "Permanent" is not a dead-letter reason (did you mean PermanentFailure?); the reasons are InvalidMessage, PermanentFailure, MaxAttemptsExceeded`},
		{[]string{"purge", "--reason", "MaxAttempt", "--yes"}, "did you mean MaxAttemptsExceeded?"},
	} {
		r := runDLQCommand(t, env, append([]string{"--data-dir", dir}, tt.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("dlq %q: want exit 2 saying %q\n%s", tt.args, tt.want, r)
		}
	}
	if r := runDLQCommand(t, env, "list", "--json", "--data-dir", dir); r.code != 0 || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("after the usage errors the dead letter is not there as before:\n%s", r)
	}
	if r := runDLQCommand(t, env, "list", "--reason", "permanentfailure", "--data-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "e1") {
		t.Errorf("a reason in another case is not read as the reason:\n%s", r)
	}
}

func TestDLQ_asks_the_address_given_with_addr_and_says_what_to_do_when_nothing_answers(t *testing.T) {
	erp := newERPDouble(t)
	env := dlqEnv(t, erp)
	dir := t.TempDir()
	startInProcessServe(t, dir, freeAddr(t), env)
	nobody := freeAddr(t)
	r := runDLQCommand(t, env, "list", "--data-dir", dir, "--addr", nobody)
	if r.code != 1 || !strings.Contains(r.stderr, nobody) || !strings.Contains(r.stderr, "--addr HOST:PORT") {
		t.Errorf("dlq list --addr %s with nothing there:\n%s", nobody, r)
	}
}

func TestDLQ_after_the_demo_names_the_data_dir_a_running_serve_holds(t *testing.T) {
	env := mapEnv(map[string]string{"DVRELAY_ROUTES": filepath.Join(appRoot, "routes.json")})
	for name, parent := range map[string]string{
		"the default holds an empty queue": parkedDir(t),
		"the default holds no queue":       t.TempDir(),
	} {
		t.Run(name, func(t *testing.T) {
			demo := filepath.Join(parent, "demo")
			s := startInProcessServe(t, demo, freeAddr(t), env)

			r := runDLQCommand(t, env, "list", "--data-dir", parent)

			for _, want := range []string{demo, s.addr, "handler dlq list --data-dir " + demo} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("dlq list on %s does not point at the running serve (%q):\n%s", parent, want, r)
				}
			}
		})
	}
}

func TestDLQ_history_tells_what_happened_to_a_record_through_serve_and_on_the_data_dir(t *testing.T) {
	erp := newERPDouble(t)
	env := dlqEnv(t, erp)
	dir := t.TempDir()
	s := startInProcessServe(t, dir, freeAddr(t), env)
	body := sampleEvent(t)
	var top struct{ PrimaryEntityId string }
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	a := mustAccept(t, s.addr, body)
	eventually(t, "the dead letter", func() bool { return health(t, s.addr)["deadLettered"] == float64(1) })
	erp.fix()
	if r := runDLQCommand(t, env, "resubmit", "--all", "--data-dir", dir); r.code != 0 {
		t.Fatalf("dlq resubmit --all:\n%s", r)
	}
	eventually(t, "the resubmitted event completed", func() bool {
		r := runDLQCommand(t, env, "history", top.PrimaryEntityId, "--data-dir", dir)
		return r.code == 0 && strings.Contains(r.stdout, "completed")
	})
	check := func(how string, r dlqResult) {
		t.Helper()
		for _, want := range []string{"what happened to " + top.PrimaryEntityId, "event " + a.EventID, "accepted",
			"dead-lettered", "erp-sync", "400", "customer account 4711 is blocked in ERP", "resubmitted", "completed"} {
			if r.code != 0 || !strings.Contains(r.stdout, want) {
				t.Errorf("dlq history %s does not show %q:\n%s", how, want, r)
			}
		}
	}
	check("through serve", runDLQCommand(t, env, "history", top.PrimaryEntityId, "--data-dir", dir))
	asJSON := runDLQCommand(t, env, "history", a.EventID, "--json", "--data-dir", dir)
	var st support.Story
	if asJSON.code != 0 || json.Unmarshal([]byte(strings.TrimSpace(asJSON.stdout)), &st) != nil || st.Outcome != "completed" || len(st.Timeline) != 4 {
		t.Errorf("dlq history EventId --json, want one event completed after 4 entries:\n%s", asJSON)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, s.log.String())
	}
	check("on the data dir", runDLQCommand(t, env, "history", top.PrimaryEntityId, "--data-dir", dir))
}
