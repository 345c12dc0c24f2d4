package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"
)

// budgetClock is the log budget's time in these tests: now moves only when told, and the
// reports due at a window's end wait until the test runs them.
type budgetClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []func()
}

func (c *budgetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *budgetClock) AfterFunc(_ time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, f)
}

// EndWindow moves the clock past the current window and runs the reports that were due.
func (c *budgetClock) EndWindow() {
	c.mu.Lock()
	c.now = c.now.Add(time.Second)
	due := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

type logLine struct {
	Level         string `json:"level"`
	Msg           string `json:"msg"`
	Outcome       string `json:"outcome"`
	CorrelationID string `json:"correlationId"`
	Status        int    `json:"status"`
	NotLogged     int    `json:"notLogged"`
}

func readLines(t *testing.T, buf *bytes.Buffer) []logLine {
	t.Helper()
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	buf.Reset()
	return lines
}

// overloadedIntake returns an intake whose one in-flight place is taken, so every request it
// is asked to admit is refused 503 overloaded, and the buffer its JSON log goes to.
func overloadedIntake(t *testing.T, clock *budgetClock) (*Intake, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	in := New(Config{Secrets: [][]byte{[]byte("s3cret")}, MaxInFlight: 1}, nil, nil, slog.New(slog.NewJSONHandler(&buf, nil)))
	in.refusalLog.now, in.refusalLog.afterFunc = clock.Now, clock.AfterFunc
	release, _, ok := in.Admit(context.Background(), refusableRequest())
	if !ok {
		t.Fatal("the first request was refused")
	}
	t.Cleanup(release)
	return in, &buf
}

func refusableRequest() Request {
	return Request{Method: http.MethodPost, Header: http.Header{
		"Content-Type":     {"application/json"},
		"X-Dvrelay-Secret": {"s3cret"},
	}}
}

func TestRefusals_past_the_log_budget_are_counted_in_one_line_per_second(t *testing.T) {
	clock := &budgetClock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	in, buf := overloadedIntake(t, clock)

	for range 250 {
		if _, res, ok := in.Admit(context.Background(), refusableRequest()); ok || res.Status != http.StatusServiceUnavailable {
			t.Fatalf("admitted %v, status %d; want a 503", ok, res.Status)
		}
	}
	lines := readLines(t, buf)
	if len(lines) != refusalLinesPerSecond {
		t.Fatalf("%d lines for 250 refusals within a second, want %d: %+v", len(lines), refusalLinesPerSecond, lines)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if l.Msg != "webhook intake" || l.Outcome != "overloaded" || l.Level != "WARN" || l.CorrelationID == "" || seen[l.CorrelationID] {
			t.Errorf("line %+v: want a WARN request line of its own for an overloaded refusal", l)
		}
		seen[l.CorrelationID] = true
	}

	clock.EndWindow()
	lines = readLines(t, buf)
	if len(lines) != 1 || lines[0].Msg != MsgRefusalsNotLogged || lines[0].Outcome != "overloaded" || lines[0].Status != http.StatusServiceUnavailable ||
		lines[0].NotLogged != 250-refusalLinesPerSecond || lines[0].Level != "WARN" {
		t.Fatalf("at the end of the second: %+v; want one WARN line counting the %d refusals not logged", lines, 250-refusalLinesPerSecond)
	}

	// The next second has its own budget, and nothing is owed for it until it is spent.
	in.Admit(context.Background(), refusableRequest())
	clock.EndWindow()
	if lines := readLines(t, buf); len(lines) != 1 || lines[0].Msg != "webhook intake" {
		t.Fatalf("one refusal in the next second: %+v; want its own line and no count", lines)
	}
}

func TestRefusal_outcomes_have_budgets_of_their_own(t *testing.T) {
	clock := &budgetClock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	in, buf := overloadedIntake(t, clock)
	forged := refusableRequest()
	forged.Header.Set("X-Dvrelay-Secret", "wrong")

	for range 3 * refusalLinesPerSecond {
		in.Admit(context.Background(), refusableRequest())
	}
	for range 2 {
		if _, res, _ := in.Admit(context.Background(), forged); res.Status != http.StatusUnauthorized {
			t.Fatalf("a wrong secret answered %d, want 401", res.Status)
		}
	}
	counts := map[string]int{}
	for _, l := range readLines(t, buf) {
		counts[l.Outcome]++
	}
	if counts["overloaded"] != refusalLinesPerSecond || counts["unauthorized"] != 2 {
		t.Errorf("lines per outcome = %v; want %d overloaded and both unauthorized", counts, refusalLinesPerSecond)
	}
}

func TestLogBudget_reports_the_highest_level_it_held_back(t *testing.T) {
	clock := &budgetClock{now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	var got []string
	b := newLogBudget(func(outcome string, status int, level slog.Level, n int) {
		got = append(got, fmt.Sprint(outcome, " ", status, " ", level, " ", n))
	})
	b.now, b.afterFunc, b.perWindow = clock.Now, clock.AfterFunc, 1

	b.allow("internal-error", 500, slog.LevelWarn)
	b.allow("internal-error", 500, slog.LevelWarn)
	b.allow("internal-error", 500, slog.LevelError)
	b.allow("internal-error", 500, slog.LevelWarn)
	clock.EndWindow()
	if len(got) != 1 || got[0] != "internal-error 500 ERROR 3" {
		t.Errorf("reports = %q; want one at ERROR counting 3", got)
	}
}
