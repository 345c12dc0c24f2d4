package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/console/browsertest"
	"github.com/dvrelay/dvrelay/internal/metrics"
)

// The console's browser tests drive it in headless Chromium (see browsertest). Their
// screenshots land in testdata/screenshots (not kept in git); the README's come from the
// console package's busy-day test.

func screenshot(t *testing.T, b *browsertest.Browser, name string) {
	t.Helper()
	b.Screenshot(t, filepath.Join("testdata", "screenshots", "console-"+name+".png"))
}

// hostileName is what a Dataverse user can type into a record's name: markup, a handler and a
// script URL. The console must show it as text.
const hostileName = `<script>alert(1)</script><img src=x onerror=alert(2)> javascript:alert(3)`

// namedRecordEvent is the sample update of recordID, as a new operation, named name.
func namedRecordEvent(t *testing.T, recordID, name string) []byte {
	t.Helper()
	quoted, _ := json.Marshal(name)
	return []byte(strings.ReplaceAll(string(recordEvent(t, recordID)), `"Contoso - 40 laptops (renewal)"`, string(quoted)))
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
	br := browsertest.New(t)

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
	first := acceptWithSecret(t, p.addr, namedRecordEvent(t, recordID, hostileName))
	eventually(t, "the first event dead-lettered", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })
	second := acceptWithSecret(t, p.addr, namedRecordEvent(t, recordID, "Contoso - 41 laptops"))
	acceptWithSecret(t, p.addr, namedRecordEvent(t, otherID, "Fabrikam - 3 servers"))
	eventually(t, "three dead letters", func() bool { return health(t, p.addr)["deadLettered"] == float64(3) })

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	t.Run("sign in", func(t *testing.T) {
		br.Do(t, "open the console", chromedp.Navigate(base), chromedp.WaitVisible(css(`#secret`)))
		if path := browsertest.Read(t, br, "location", chromedp.Location()); !strings.HasSuffix(path, "/console/signin") {
			t.Fatalf("a visitor without a session landed on %s, want the sign-in page", path)
		}
		screenshot(t, br, "signin")
		br.Do(t, "sign in", chromedp.SendKeys(css(`#secret`), consoleSecret), chromedp.Click(css(`#signin`)),
			chromedp.WaitVisible(css(`#stat-deadlettered`)))
	})

	t.Run("a dead letter from an ERP that answered 400 shows the ERP's reason and renders the record's data inert", func(t *testing.T) {
		br.Do(t, "open the event", chromedp.Navigate(base+"event?id="+first.EventID), chromedp.WaitVisible(css(`#cause-text`)),
			chromedp.Sleep(300*time.Millisecond))
		cause := browsertest.Read(t, br, "cause", chromedp.Text(css(`#cause-text`)))
		bodyText := browsertest.Read(t, br, "body", chromedp.Text(css(`#body`)))
		scripts := browsertest.Read(t, br, "scripts", chromedp.Evaluate[int](`document.querySelectorAll('script:not([src="/console/static/console.js"])').length`))
		handlers := browsertest.Read(t, br, "handlers", chromedp.Evaluate[int](`document.querySelectorAll('[onerror],[onload],[onclick],[onmouseover]').length`))
		scriptLinks := browsertest.Read(t, br, "links", chromedp.Evaluate[int](`Array.from(document.querySelectorAll('[href],[src],[action]')).filter(e => /^\s*javascript:/i.test(e.getAttribute('href')||e.getAttribute('src')||e.getAttribute('action'))).length`))
		if !strings.Contains(cause, "400 Bad Request") || !strings.Contains(cause, reason) || !strings.Contains(cause, "erp-sync") {
			t.Errorf("cause = %q, want the ERP's 400 and its reason %q at erp-sync", cause, reason)
		}
		if !strings.Contains(bodyText, "<script>alert(1)</script>") || !strings.Contains(bodyText, "<img src=x onerror=alert(2)> javascript:alert(3)") {
			t.Errorf("the body does not show the record's values as text:\n%s", bodyText)
		}
		if scripts != 0 || handlers != 0 || scriptLinks != 0 || br.Dialogs.Load() != 0 {
			t.Errorf("the page holds %d scripts, %d event handlers, %d javascript: links of the record's data; %d dialogs opened",
				scripts, handlers, scriptLinks, br.Dialogs.Load())
		}
		screenshot(t, br, "event")
	})

	t.Run("resubmitting from the event page completes the event", func(t *testing.T) {
		erpRefuses.Store(false)
		br.Do(t, "preview the resubmit", chromedp.Click(css(`#resubmit-event`)), chromedp.WaitVisible(css(`#preview-title`)))
		if title := browsertest.Read(t, br, "title", chromedp.Text(css(`#preview-title`))); !strings.Contains(title, "Resubmit 1 dead letter") {
			t.Fatalf("preview title = %q", title)
		}
		br.Do(t, "confirm", chromedp.Click(css(`#confirm-action`)), chromedp.WaitVisible(css(`#timeline`)))
		eventually(t, "the resubmitted event completed", func() bool {
			br.Do(t, "reload the event", chromedp.Navigate(base+"event?id="+first.EventID), chromedp.WaitVisible(css(`#timeline`)))
			text := browsertest.Read(t, br, "timeline", chromedp.Text(css(`#timeline`)))
			return strings.Contains(text, "resubmitted") && strings.Contains(text, "completed")
		})
		screenshot(t, br, "event-timeline")
	})

	t.Run("a bulk resubmit by filter shows its preview first", func(t *testing.T) {
		br.Do(t, "open the dead letters", chromedp.Navigate(base+"deadletters?reason=PermanentFailure&entity=opportunity"),
			chromedp.WaitVisible(css(`#resubmit-all`)))
		screenshot(t, br, "deadletters")
		br.Do(t, "preview", chromedp.Click(css(`#resubmit-all`)), chromedp.WaitVisible(css(`#preview`)))
		if rows := browsertest.Read(t, br, "rows", chromedp.Evaluate[int](`document.querySelectorAll('#preview tbody tr').length`)); rows != 2 {
			t.Errorf("the preview lists %d dead letters, want the 2 the filter matches", rows)
		}
		if n := health(t, p.addr)["deadLettered"]; n != float64(2) {
			t.Fatalf("dead letters = %v while the preview shows, want 2: a preview sends nothing", n)
		}
		screenshot(t, br, "preview")
		br.Do(t, "confirm", chromedp.Click(css(`#confirm-action`)), chromedp.WaitVisible(css(`.flash`)))
		eventually(t, "no dead letters", func() bool { return health(t, p.addr)["deadLettered"] == float64(0) })
	})

	t.Run("searching a RecordId lists the record's events in order with their outcomes", func(t *testing.T) {
		eventually(t, "every event completed", func() bool {
			st := health(t, p.addr)
			return st["queued"] == float64(0) && st["scheduled"] == float64(0)
		})
		br.Do(t, "search", chromedp.Navigate(base), chromedp.WaitVisible(css(`input[type=search][name=q]`)),
			chromedp.SendKeys(css(`input[name=q]`), recordID+"\n"), chromedp.WaitVisible(css(`#events`)))
		ids := browsertest.Read(t, br, "ids", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events tbody tr td:nth-child(4)')).map(td => td.innerText.trim())`))
		outcomes := browsertest.Read(t, br, "outcomes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events .outcome')).map(e => e.textContent.trim())`))
		if want := []string{first.EventID, second.EventID}; fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("events = %v, want %v in the order they were accepted", ids, want)
		}
		if fmt.Sprint(outcomes) != "[completed completed]" {
			t.Errorf("outcomes = %v, want both completed", outcomes)
		}
		screenshot(t, br, "record")
	})

	t.Run("a state-changing POST without the CSRF token or without a session is refused", func(t *testing.T) {
		forged := `fetch('/console/deadletters/resubmit', {method: 'POST', body: new URLSearchParams({seqs: '1', confirm: 'yes'})}).then(r => r.status)`
		br.Do(t, "open the overview", chromedp.Navigate(base), chromedp.WaitVisible(css(`#stat-queued`)))
		if status := browsertest.Read(t, br, "post without the token", chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise)); status != http.StatusForbidden {
			t.Errorf("signed in, without the token: %d, want 403", status)
		}
		br.Do(t, "sign out", chromedp.Click(css(`form.signout button`)), chromedp.WaitVisible(css(`#secret`)))
		if status := browsertest.Read(t, br, "post without a session", chromedp.Evaluate[int](forged, chromedp.EvalAwaitPromise)); status != http.StatusForbidden {
			t.Errorf("without a session: %d, want 403", status)
		}
		br.Do(t, "sign in again", chromedp.SendKeys(css(`#secret`), consoleSecret), chromedp.Click(css(`#signin`)),
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
		// The last attempt's history entry rides the writer's next commit: look again until then.
		var mismatch []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			br.Do(t, "open the overview", chromedp.Navigate(base), chromedp.WaitVisible(css(`#stat-queued`)))
			mismatch = nil
			for sel, n := range want {
				text := browsertest.Read(t, br, "read "+sel, chromedp.Text(css(sel)))
				if got, err := strconv.ParseFloat(strings.TrimSpace(text), 64); err != nil || got != n {
					mismatch = append(mismatch, fmt.Sprintf("%s = %q, /metrics says %v", sel, text, n))
				}
			}
			if len(mismatch) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, m := range mismatch {
			t.Error(m)
		}
		if want["#hour-accepted"] != 3 || want["#hour-dead-lettered"] != 3 {
			t.Errorf("/metrics counts %v accepted and %v dead-lettered, want 3 and 3", want["#hour-accepted"], want["#hour-dead-lettered"])
		}
		screenshot(t, br, "overview")
	})
}
