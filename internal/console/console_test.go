package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/console"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
)

const secret = "support-s3cret"

// hostile is what a Dataverse user can type into a record: markup and script URLs.
const hostile = `{"EventName":"Update","Entity":"opportunity","RecordId":"7d1c0a55-0000-0000-0000-000000000001",` +
	`"Attributes":{"name":"<script>alert(1)</script>","description":"<img src=x onerror=alert(2)>","websiteurl":"javascript:alert(3)"}}`

type fixture struct {
	srv *httptest.Server
	q   *local.Queue
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	q, err := local.Open(ctx, t.TempDir(), local.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	if err := q.Publish(ctx, &queue.Message{MessageID: "ev-hostile", CorrelationID: "corr-1", Subject: "Update", Body: []byte(hostile),
		ApplicationProperties: map[string]any{queue.PropEntity: "opportunity", queue.PropEventName: "Update"}}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Receive(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Settle(ctx, queue.DeliveryOf(got[0]), queue.Outcome{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure,
		Step: "erp-sync", Description: `POST ${DVRELAY_ERP_URL}: 400 Bad Request: {"message":"<b>blocked</b>"}`}); err != nil {
		t.Fatal(err)
	}
	// The attempt's history entry rides the writer's next commit after the settlement.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h, err := q.EventHistory(ctx, queue.HistoryQuery{Key: "ev-hostile"})
		if err != nil {
			t.Fatal(err)
		}
		if len(h) == 2 || time.Now().After(deadline) {
			break
		}
	}
	c, err := console.New(console.Config{
		Support: &support.Service{Source: support.Backend{Q: q}, History: q, Grouper: q, Stats: q.Stats},
		Auth:    httpauth.New("x-dvrelay-secret", []byte(secret)), DataverseURL: "https://org.crm.dynamics.com", Backend: "embedded",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, q: q}
}

func newClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in:\n%s", page)
	}
	return m[1]
}

func signIn(t *testing.T, f *fixture, c *http.Client) string {
	t.Helper()
	_, page := get(t, c, f.srv.URL+"/console/signin")
	resp, err := c.PostForm(f.srv.URL+"/console/signin", url.Values{"csrf": {csrfOf(t, page)}, "secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, home := get(t, c, f.srv.URL+"/console/")
	if !strings.Contains(home, "Overview") {
		t.Fatalf("not signed in; the overview is:\n%s", home)
	}
	return csrfOf(t, home)
}

func deadLetters(t *testing.T, q *local.Queue) int {
	t.Helper()
	st, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.DeadLettered
}

func TestConsole_sends_a_visitor_without_a_session_to_sign_in(t *testing.T) {
	f := newFixture(t)
	resp, page := get(t, newClient(t), f.srv.URL+"/console/deadletters")
	if resp.Request.URL.Path != "/console/signin" || strings.Contains(page, "ev-hostile") {
		t.Fatalf("ended at %s", resp.Request.URL)
	}
}

func TestConsole_refuses_a_wrong_secret(t *testing.T) {
	f := newFixture(t)
	c := newClient(t)
	_, page := get(t, c, f.srv.URL+"/console/signin")
	resp, err := c.PostForm(f.srv.URL+"/console/signin", url.Values{"csrf": {csrfOf(t, page)}, "secret": {"guess"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", resp.StatusCode)
	}
	if r, _ := get(t, c, f.srv.URL+"/console/"); r.Request.URL.Path != "/console/signin" {
		t.Fatal("a wrong secret opened the console")
	}
}

func TestConsole_session_cookie_is_HttpOnly_and_SameSite_Strict_and_pages_carry_the_CSP(t *testing.T) {
	f := newFixture(t)
	resp, _ := get(t, newClient(t), f.srv.URL+"/console/signin")
	set := resp.Header.Get("Set-Cookie")
	if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") {
		t.Errorf("Set-Cookie = %q", set)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestConsole_refuses_a_state_changing_POST_without_session_or_CSRF_token(t *testing.T) {
	f := newFixture(t)
	form := url.Values{"seqs": {"1"}}
	// No session at all.
	resp, err := http.PostForm(f.srv.URL+"/console/deadletters/resubmit", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("without a session: status %d, want 403", resp.StatusCode)
	}
	// A signed-in session, without and with a wrong token.
	c := newClient(t)
	token := signIn(t, f, c)
	for _, bad := range []string{"", token + "x"} {
		form.Set("csrf", bad)
		for _, path := range []string{"/console/deadletters/resubmit", "/console/deadletters/purge"} {
			form.Set("confirm", "yes")
			resp, err := c.PostForm(f.srv.URL+path, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with csrf %q: status %d, want 403", path, bad, resp.StatusCode)
			}
		}
	}
	if n := deadLetters(t, f.q); n != 1 {
		t.Fatalf("dead letters = %d after refused requests, want 1 still", n)
	}
	// The same form with the token does it.
	form.Set("csrf", token)
	resp, err = c.PostForm(f.srv.URL+"/console/deadletters/resubmit", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := deadLetters(t, f.q); n != 0 {
		t.Fatalf("dead letters = %d after a resubmit with the token, want 0", n)
	}
}

func TestConsole_pages_render_event_data_as_text(t *testing.T) {
	f := newFixture(t)
	c := newClient(t)
	signIn(t, f, c)
	for _, path := range []string{
		"/console/", "/console/deadletters", "/console/deadletters?reason=PermanentFailure&since=7d",
		"/console/deadletters/preview?action=resubmit&all=1", "/console/deadletters/preview?action=purge&seq=1",
		"/console/event?id=ev-hostile", "/console/record?q=7d1c0a55-0000-0000-0000-000000000001",
		"/console/record?q=" + url.QueryEscape("https://org.crm.dynamics.com/main.aspx?etn=opportunity&id={7D1C0A55-0000-0000-0000-000000000001}"),
	} {
		resp, page := get(t, c, f.srv.URL+path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d\n%s", path, resp.StatusCode, page)
			continue
		}
		for _, raw := range []string{"<script>alert", "<img src=x", `href="javascript:`, "<b>blocked"} {
			if strings.Contains(page, raw) {
				t.Errorf("%s: holds %q unescaped", path, raw)
			}
		}
		if !strings.Contains(page, `<input type="search" name="q"`) {
			t.Errorf("%s: no search box", path)
		}
		if strings.Contains(page, secret) {
			t.Errorf("%s: shows the secret", path)
		}
	}
	_, ev := get(t, c, f.srv.URL+"/console/event?id=ev-hostile")
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "400 Bad Request", "erp-sync",
		"https://org.crm.dynamics.com/main.aspx?pagetype=entityrecord&amp;etn=opportunity&amp;id=7d1c0a55-0000-0000-0000-000000000001"} {
		if !strings.Contains(ev, want) {
			t.Errorf("event page lacks %q", want)
		}
	}
	_, rec := get(t, c, f.srv.URL+"/console/record?q=7d1c0a55-0000-0000-0000-000000000001")
	if !strings.Contains(rec, "ev-hostile") || !strings.Contains(rec, "dead-lettered") {
		t.Errorf("record page lacks the event and its outcome:\n%s", rec)
	}
}

// brokerOnly is a Source like Service Bus's: dead letters, and no history or counts.
type brokerOnly struct{ support.Source }

func TestConsole_without_history_says_where_the_history_is(t *testing.T) {
	f := newFixture(t)
	c, err := console.New(console.Config{
		Support: &support.Service{Source: brokerOnly{support.Backend{Q: f.q}}},
		Auth:    httpauth.New("x-dvrelay-secret", []byte(secret)), Backend: "servicebus",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	f.srv = srv
	cl := newClient(t)
	signIn(t, f, cl)
	for _, path := range []string{"/console/", "/console/event?id=ev-hostile", "/console/record?q=7d1c0a55-0000-0000-0000-000000000001"} {
		resp, page := get(t, cl, srv.URL+path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, support.HistoryQuery) {
			t.Errorf("%s: status %d; want the page to name %s:\n%s", path, resp.StatusCode, support.HistoryQuery, page)
		}
	}
	_, rec := get(t, cl, srv.URL+"/console/record?q=7d1c0a55-0000-0000-0000-000000000001")
	if !strings.Contains(rec, "ev-hostile") {
		t.Errorf("the record search did not find the dead letter of the record")
	}
}

func TestConsole_preview_and_event_page_flag_a_dead_letter_a_later_event_of_its_record_overtook(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// The fixture's dead letter carries no order key (published bare): key a record of its own.
	key := queue.OrderKey("opportunity", "rec-9")
	for _, id := range []string{"ev-old", "ev-new"} {
		if err := f.q.Publish(ctx, &queue.Message{MessageID: id, Subject: "Update", Body: []byte(`{"RecordId":"rec-9"}`),
			ApplicationProperties: map[string]any{queue.PropEntity: "opportunity", queue.PropOrderKey: key}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, out := range []queue.Outcome{
		{Kind: queue.DeadLetter, Reason: queue.ReasonPermanentFailure, Step: "erp-sync", Description: "400 Bad Request"},
		{Kind: queue.Complete},
	} {
		got, err := f.q.Receive(ctx, 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("receive = %v, %v", got, err)
		}
		if err := f.q.Settle(ctx, queue.DeliveryOf(got[0]), out); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t)
	signIn(t, f, c)
	_, preview := get(t, c, f.srv.URL+"/console/deadletters/preview?action=resubmit&all=1")
	if n := strings.Count(preview, `href="/console/event?id=ev-new"`); n != 1 {
		t.Errorf("preview links the newer completed event %d times, want once (ev-old only, not the fixture's):\n%s", n, preview)
	}
	_, ev := get(t, c, f.srv.URL+"/console/event?id=ev-old")
	if !strings.Contains(ev, `id="newer-done"`) || !strings.Contains(ev, "ev-new") {
		t.Errorf("event page of ev-old does not say ev-new of its record completed since:\n%s", ev)
	}
	_, other := get(t, c, f.srv.URL+"/console/event?id=ev-hostile")
	if strings.Contains(other, `id="newer-done"`) {
		t.Error("event page of ev-hostile flags a newer event; none of its record completed")
	}
}
