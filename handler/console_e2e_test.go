package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/metrics"
)

// The console's tests drive it in headless Chromium, the way support uses it. Without Chromium
// they skip with one line saying how to run them; under CI (CI=true) its absence is a failure.

const consoleHowTo = "console browser tests need Chromium: apt-get install chromium (or set DVRELAY_CHROMIUM to its path), then go test ./handler -run Console"

// chromiumPath finds the browser, or skips (fails under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("DVRELAY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "headless-shell"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(consoleHowTo)
	}
	t.Skip(consoleHowTo)
	return ""
}

// browser is a fresh headless Chromium with a profile of its own, and a tab in it. Every
// JavaScript dialog it opens is counted in dialogs and dismissed.
func browser(t *testing.T, dialogs *atomic.Int32) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // the tests may run as root, where the sandbox refuses to start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.WindowSize(1366, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	// A dialog would stop the page until dismissed: count it, dismiss it, and let the test fail.
	go func() {
		for _, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			dialogs.Add(1)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return ctx
}

// inBrowser runs steps in the tab, each call within 30 seconds.
func inBrowser(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// read runs a in the tab and returns its value.
func read[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves the whole page under docs/img, where the README shows it.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := read(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := filepath.Join("..", "docs", "img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hostileName is what a Dataverse user can type into a record's name: markup, a handler and a
// script URL. The console must show it as text.
const hostileName = `<script>alert(1)</script><img src=x onerror=alert(2)> javascript:alert(3)`

// recordEvent is the sample update of recordID, as a new operation, named name.
func recordEvent(t *testing.T, recordID, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "samples", "opportunity-update.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct{ PrimaryEntityId, OperationId string }
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	s = regexp.MustCompile("(?i)"+regexp.QuoteMeta(top.PrimaryEntityId)).ReplaceAllString(s, recordID)
	s = regexp.MustCompile("(?i)"+regexp.QuoteMeta(top.OperationId)).ReplaceAllString(s, uuid.NewString())
	quoted, _ := json.Marshal(name)
	s = strings.ReplaceAll(s, `"Contoso - 40 laptops (renewal)"`, string(quoted))
	return []byte(s)
}

const consoleSecret = "console-test-secret"

func acceptWithSecret(t *testing.T, addr string, body []byte) accepted {
	t.Helper()
	resp, b, err := post(context.Background(), addr, body, http.Header{"X-Dvrelay-Secret": {consoleSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, body %s", resp.StatusCode, b)
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil || a.EventID == "" {
		t.Fatalf("202 body %s: %v", b, err)
	}
	return a
}

func TestConsole_in_a_browser_answers_what_happened_to_a_record(t *testing.T) {
	var dialogs atomic.Int32
	ctx := browser(t, &dialogs)

	const reason = "customer account 4711 is blocked in ERP"
	credit, erp := newDownstream(t, `{"score":5}`), newDownstream(t, "")
	var erpRefuses atomic.Bool
	erpRefuses.Store(true)
	erp.answer(func(string) int {
		if erpRefuses.Load() {
			return http.StatusBadRequest
		}
		return http.StatusOK
	}, `{"message":"`+reason+`"}`)
	consoleAddr := freeAddr(t)
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp,
		"DVRELAY_WEBHOOK_SECRET="+consoleSecret, "DVRELAY_CONSOLE_ADDR="+consoleAddr))
	base := "http://" + consoleAddr + "/console/"

	recordID, otherID := uuid.NewString(), uuid.NewString()
	first := acceptWithSecret(t, p.addr, recordEvent(t, recordID, hostileName))
	eventually(t, "the first event dead-lettered", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })
	second := acceptWithSecret(t, p.addr, recordEvent(t, recordID, "Contoso - 41 laptops"))
	acceptWithSecret(t, p.addr, recordEvent(t, otherID, "Fabrikam - 3 servers"))
	eventually(t, "three dead letters", func() bool { return health(t, p.addr)["deadLettered"] == float64(3) })

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	t.Run("sign in", func(t *testing.T) {
		inBrowser(t, ctx, "open the console", chromedp.Navigate(base), chromedp.WaitVisible(css(`#secret`)))
		if path := read(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(path, "/console/signin") {
			t.Fatalf("a visitor without a session landed on %s, want the sign-in page", path)
		}
		screenshot(t, ctx, "signin")
		inBrowser(t, ctx, "sign in", chromedp.SendKeys(css(`#secret`), consoleSecret), chromedp.Click(css(`#signin`)),
			chromedp.WaitVisible(css(`#stat-deadlettered`)))
	})

	t.Run("a dead letter from an ERP that answered 400 shows the ERP's reason and renders the record's data inert", func(t *testing.T) {
		inBrowser(t, ctx, "open the event", chromedp.Navigate(base+"event?id="+first.EventID), chromedp.WaitVisible(css(`#cause-text`)),
			chromedp.Sleep(300*time.Millisecond))
		cause := read(t, ctx, "cause", chromedp.Text(css(`#cause-text`)))
		bodyText := read(t, ctx, "body", chromedp.Text(css(`#body`)))
		scripts := read(t, ctx, "scripts", chromedp.Evaluate[int](`document.querySelectorAll('script:not([src="/console/static/console.js"])').length`))
		handlers := read(t, ctx, "handlers", chromedp.Evaluate[int](`document.querySelectorAll('[onerror],[onload],[onclick],[onmouseover]').length`))
		scriptLinks := read(t, ctx, "links", chromedp.Evaluate[int](`Array.from(document.querySelectorAll('[href],[src],[action]')).filter(e => /^\s*javascript:/i.test(e.getAttribute('href')||e.getAttribute('src')||e.getAttribute('action'))).length`))
		if !strings.Contains(cause, "400 Bad Request") || !strings.Contains(cause, reason) || !strings.Contains(cause, "erp-sync") {
			t.Errorf("cause = %q, want the ERP's 400 and its reason %q at erp-sync", cause, reason)
		}
		if !strings.Contains(bodyText, "<script>alert(1)</script>") || !strings.Contains(bodyText, "<img src=x onerror=alert(2)> javascript:alert(3)") {
			t.Errorf("the body does not show the record's values as text:\n%s", bodyText)
		}
		if scripts != 0 || handlers != 0 || scriptLinks != 0 || dialogs.Load() != 0 {
			t.Errorf("the page holds %d scripts, %d event handlers, %d javascript: links of the record's data; %d dialogs opened",
				scripts, handlers, scriptLinks, dialogs.Load())
		}
		screenshot(t, ctx, "event")
	})

	t.Run("resubmitting from the event page completes the event", func(t *testing.T) {
		erpRefuses.Store(false)
		inBrowser(t, ctx, "preview the resubmit", chromedp.Click(css(`#resubmit-event`)), chromedp.WaitVisible(css(`#preview-title`)))
		if title := read(t, ctx, "title", chromedp.Text(css(`#preview-title`))); !strings.Contains(title, "Resubmit 1 dead letter") {
			t.Fatalf("preview title = %q", title)
		}
		inBrowser(t, ctx, "confirm", chromedp.Click(css(`#confirm-action`)), chromedp.WaitVisible(css(`#timeline`)))
		eventually(t, "the resubmitted event completed", func() bool {
			inBrowser(t, ctx, "reload the event", chromedp.Navigate(base+"event?id="+first.EventID), chromedp.WaitVisible(css(`#timeline`)))
			text := read(t, ctx, "timeline", chromedp.Text(css(`#timeline`)))
			return strings.Contains(text, "resubmitted") && strings.Contains(text, "completed")
		})
		screenshot(t, ctx, "event-timeline")
	})

	t.Run("a bulk resubmit by filter shows its preview first", func(t *testing.T) {
		inBrowser(t, ctx, "open the dead letters", chromedp.Navigate(base+"deadletters?reason=PermanentFailure&entity=opportunity"),
			chromedp.WaitVisible(css(`#resubmit-all`)))
		screenshot(t, ctx, "deadletters")
		inBrowser(t, ctx, "preview", chromedp.Click(css(`#resubmit-all`)), chromedp.WaitVisible(css(`#preview`)))
		if rows := read(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll('#preview tbody tr').length`)); rows != 2 {
			t.Errorf("the preview lists %d dead letters, want the 2 the filter matches", rows)
		}
		if n := health(t, p.addr)["deadLettered"]; n != float64(2) {
			t.Fatalf("dead letters = %v while the preview shows, want 2: a preview sends nothing", n)
		}
		screenshot(t, ctx, "preview")
		inBrowser(t, ctx, "confirm", chromedp.Click(css(`#confirm-action`)), chromedp.WaitVisible(css(`.flash`)))
		eventually(t, "no dead letters", func() bool { return health(t, p.addr)["deadLettered"] == float64(0) })
	})

	t.Run("searching a RecordId lists the record's events in order with their outcomes", func(t *testing.T) {
		eventually(t, "every event completed", func() bool {
			st := health(t, p.addr)
			return st["queued"] == float64(0) && st["scheduled"] == float64(0)
		})
		inBrowser(t, ctx, "search", chromedp.Navigate(base), chromedp.WaitVisible(css(`input[type=search][name=q]`)),
			chromedp.SendKeys(css(`input[name=q]`), recordID+"\n"), chromedp.WaitVisible(css(`#events`)))
		ids := read(t, ctx, "ids", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events tbody tr td:nth-child(4)')).map(td => td.innerText.trim())`))
		outcomes := read(t, ctx, "outcomes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events .outcome')).map(e => e.textContent.trim())`))
		if want := []string{first.EventID, second.EventID}; fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("events = %v, want %v in the order they were accepted", ids, want)
		}
		if fmt.Sprint(outcomes) != "[completed completed]" {
			t.Errorf("outcomes = %v, want both completed", outcomes)
		}
		screenshot(t, ctx, "record")
	})

	t.Run("a state-changing POST without the CSRF token or without a session is refused", func(t *testing.T) {
		forged := `fetch('/console/deadletters/resubmit', {method: 'POST', body: new URLSearchParams({seqs: '1', confirm: 'yes'})}).then(r => r.status)`
		inBrowser(t, ctx, "open the overview", chromedp.Navigate(base), chromedp.WaitVisible(css(`#stat-queued`)))
		if status := read(t, ctx, "post without the token", chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise)); status != http.StatusForbidden {
			t.Errorf("signed in, without the token: %d, want 403", status)
		}
		inBrowser(t, ctx, "sign out", chromedp.Click(css(`form.signout button`)), chromedp.WaitVisible(css(`#secret`)))
		if status := read(t, ctx, "post without a session", chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise)); status != http.StatusForbidden {
			t.Errorf("without a session: %d, want 403", status)
		}
		inBrowser(t, ctx, "sign in again", chromedp.SendKeys(css(`#secret`), consoleSecret), chromedp.Click(css(`#signin`)),
			chromedp.WaitVisible(css(`#stat-queued`)))
	})

	t.Run("the overview's counts equal /metrics", func(t *testing.T) {
		families := scrapeMetrics(t, p.addr, http.Header{"X-Dvrelay-Secret": {consoleSecret}})
		deadLettered := 0.0
		for _, m := range families[metrics.EventsProcessed].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "dead-letter" {
					deadLettered += m.GetCounter().GetValue()
				}
			}
		}
		want := map[string]float64{
			"#hour-accepted":      sample(families, metrics.EventsPublished),
			"#hour-completed":     sample(families, metrics.EventsProcessed, "outcome", "complete", "reason", ""),
			"#hour-retrying":      sample(families, metrics.EventsProcessed, "outcome", "retry-later", "reason", ""),
			"#hour-dead-lettered": deadLettered,
			"#stat-queued":        sample(families, metrics.QueueQueued),
			"#stat-scheduled":     sample(families, metrics.QueueScheduled),
			"#stat-deadlettered":  sample(families, metrics.QueueDeadLettered),
		}
		inBrowser(t, ctx, "open the overview", chromedp.Navigate(base), chromedp.WaitVisible(css(`#stat-queued`)))
		for sel, n := range want {
			text := read(t, ctx, "read "+sel, chromedp.Text(css(sel)))
			if got, err := strconv.ParseFloat(strings.TrimSpace(text), 64); err != nil || got != n {
				t.Errorf("%s = %q, /metrics says %v", sel, text, n)
			}
		}
		if want["#hour-accepted"] != 3 || want["#hour-dead-lettered"] != 3 {
			t.Errorf("/metrics counts %v accepted and %v dead-lettered, want 3 and 3", want["#hour-accepted"], want["#hour-dead-lettered"])
		}
		screenshot(t, ctx, "overview")
	})
}
