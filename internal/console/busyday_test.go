package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dvrelay/dvrelay/internal/console"
	"github.com/dvrelay/dvrelay/internal/console/browsertest"
	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/queue"
	"github.com/dvrelay/dvrelay/internal/queue/local"
	"github.com/dvrelay/dvrelay/internal/support"
)

// busyClock is the day's clock, moved by hand.
type busyClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *busyClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *busyClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *busyClock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

// day plays a day of an installation through the queue: events published, received and settled
// as the worker would, on the day's clock.
type day struct {
	t     *testing.T
	q     *local.Queue
	clock *busyClock
	rnd   *rand.Rand
	n     int
}

// showcase is the record whose story the README's record page tells.
const showcase = "a2f0c6d1-5b7e-ef11-9c3a-000d3a4f1b27"

var entities = []struct{ entity, event, message, name string }{
	{"opportunity", "OpportunityUpdated", "Update", "Contoso - 40 laptops (renewal)"},
	{"opportunity", "OpportunityCreated", "Create", "Fabrikam - 12 servers"},
	{"account", "AccountUpdated", "Update", "Northwind Traders"},
	{"contact", "ContactUpdated", "Update", "Ana Trujillo"},
}

type outcome struct {
	retries int    // transient failures before the last attempt
	reason  string // the last attempt dead-letters with it; "" completes
	step    string
	detail  string
}

var (
	unavailable = `route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 503 Service Unavailable: {"error":"maintenance window"}`
	blocked     = `route credit-check step erp-sync: POST ${DVRELAY_ERP_URL}: 400 Bad Request: {"message":"customer account 4711 is blocked in ERP"}`
	invalid     = `route credit-check step credit-score: POST ${DVRELAY_CREDIT_URL}: 422 Unprocessable Entity: {"error":"estimatedvalue must be positive"}`
)

func (d *day) event(at time.Time, recordID string, kind int, out outcome) string {
	d.t.Helper()
	ctx := context.Background()
	d.clock.set(at)
	d.n++
	e := entities[kind]
	id := fmt.Sprintf("%08x-%04x-5%03x-9%03x-%012x", d.rnd.Uint32(), d.n, d.rnd.IntN(0xfff), d.rnd.IntN(0xfff), d.rnd.Uint64()&0xffffffffffff)
	corr := fmt.Sprintf("%08x-93d7-4a5b-8e61-%012x", d.rnd.Uint32(), d.rnd.Uint64()&0xffffffffffff)
	body := fmt.Sprintf(`{"SchemaVersion":"1.1","EventId":%q,"CorrelationId":%q,"EventName":%q,"Entity":%q,"Message":%q,"RecordId":%q,`+
		`"ChangedFields":["estimatedvalue","name"],"Attributes":{"name":%q,"estimatedvalue":%d.0,"statecode":0},`+
		`"TriggeredBy":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","Timestamp":%q,"Source":"dataverse-webhook","Stage":40,"Mode":1}`,
		id, corr, e.event, e.entity, e.message, recordID, e.name, 1000+d.rnd.IntN(90000), at.Format(time.RFC3339))
	if err := d.q.Publish(ctx, &queue.Message{MessageID: id, CorrelationID: corr, Subject: e.event, ContentType: "application/json",
		Body: []byte(body), ApplicationProperties: map[string]any{queue.PropEntity: e.entity, queue.PropEventName: e.event,
			"traceparent": fmt.Sprintf("00-%016x%016x-%016x-01", d.rnd.Uint64(), d.rnd.Uint64(), d.rnd.Uint64())}}); err != nil {
		d.t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		d.clock.advance(time.Duration(200+d.rnd.IntN(800)) * time.Millisecond)
		got, err := d.q.Receive(ctx, 1)
		if err != nil || len(got) != 1 {
			d.t.Fatalf("receive: %v, %d", err, len(got))
		}
		d.clock.advance(time.Duration(40+d.rnd.IntN(700)) * time.Millisecond)
		o := queue.Outcome{Kind: queue.Complete, Summary: "complete: 4 steps, routes credit-check, audit-log"}
		switch {
		case attempt <= out.retries:
			o = queue.Outcome{Kind: queue.RetryLater, RetryAt: d.clock.Now().Add(30 * time.Second), Attempt: attempt + 1,
				Step: "erp-sync", Description: unavailable}
		case out.reason != "":
			o = queue.Outcome{Kind: queue.DeadLetter, Reason: out.reason, Step: out.step, Description: out.detail}
		}
		if err := d.q.Settle(ctx, queue.DeliveryOf(got[0]), o); err != nil {
			d.t.Fatal(err)
		}
		if o.Kind != queue.RetryLater {
			return id
		}
		d.clock.advance(30 * time.Second)
	}
}

// resubmitAndComplete resubmits the dead letters of eventID at at, and completes them.
func (d *day) resubmitAndComplete(at time.Time, eventID string) {
	ctx := context.Background()
	d.clock.set(at)
	parked, err := d.q.QueryDeadLetters(ctx, queue.DeadLetterFilter{EventID: eventID})
	if err != nil || len(parked) != 1 {
		d.t.Fatalf("dead letters of %s: %v, %d", eventID, err, len(parked))
	}
	if _, err := d.q.Resubmit(ctx, parked[0].SequenceNumber); err != nil {
		d.t.Fatal(err)
	}
	d.clock.advance(900 * time.Millisecond)
	got, err := d.q.Receive(ctx, 1)
	if err != nil {
		d.t.Fatal(err)
	}
	d.clock.advance(180 * time.Millisecond)
	if err := d.q.Settle(ctx, queue.DeliveryOf(got[0]), queue.Outcome{Kind: queue.Complete, Summary: "complete: 4 steps"}); err != nil {
		d.t.Fatal(err)
	}
}

// playDay fills q with a day ending at end: busier in working hours, a burst of ERP refusals in
// the afternoon, and the showcase record's four events.
func playDay(t *testing.T, q *local.Queue, clock *busyClock, end time.Time) (showcaseEvents []string) {
	d := &day{t: t, q: q, clock: clock, rnd: rand.New(rand.NewPCG(7, 11))}
	records := make([]string, 120)
	for i := range records {
		records[i] = fmt.Sprintf("%08x-5b7e-ef11-9c3a-000d3a%06x", d.rnd.Uint32(), d.rnd.IntN(0xffffff))
	}
	start := end.Add(-24 * time.Hour)
	add := func(at time.Time) {
		out := outcome{}
		switch r := d.rnd.IntN(100); {
		case r < 7:
			out.retries = 1 + d.rnd.IntN(2)
		case r < 10:
			out = outcome{reason: queue.ReasonPermanentFailure, step: "erp-sync", detail: blocked}
		case r < 11:
			out = outcome{reason: queue.ReasonPermanentFailure, step: "credit-score", detail: invalid}
		}
		kind := d.rnd.IntN(len(entities))
		d.event(at, records[d.rnd.IntN(len(records))], kind, out)
	}
	for at := start; at.Before(end.Add(-time.Hour)); at = at.Add(10 * time.Minute) {
		h := at.Hour()
		n := d.rnd.IntN(2)
		if h >= 7 && h < 18 {
			n = 2 + d.rnd.IntN(5)
		}
		for range n {
			add(at.Add(time.Duration(d.rnd.IntN(600)) * time.Second))
		}
	}
	for at := end.Add(-time.Hour); at.Before(end); at = at.Add(time.Minute) {
		for range d.rnd.IntN(4) {
			add(at.Add(time.Duration(d.rnd.IntN(60)) * time.Second))
		}
	}
	showcaseEvents = append(showcaseEvents,
		d.event(end.Add(-7*time.Hour), showcase, 1, outcome{}),
		d.event(end.Add(-5*time.Hour), showcase, 0, outcome{retries: 1}))
	third := d.event(end.Add(-3*time.Hour), showcase, 0, outcome{reason: queue.ReasonPermanentFailure, step: "erp-sync", detail: blocked})
	d.resubmitAndComplete(end.Add(-160*time.Minute), third)
	showcaseEvents = append(showcaseEvents, third,
		d.event(end.Add(-25*time.Minute), showcase, 0, outcome{reason: queue.ReasonPermanentFailure, step: "erp-sync", detail: blocked}))
	clock.set(end)
	return showcaseEvents
}

// TestConsole_shows_a_busy_day renders the console over a day of traffic and saves a screenshot
// of each page to testdata/screenshots; with DVRELAY_DOCS_SCREENSHOTS=1 it saves them to
// docs/img, where the README shows them.
func TestConsole_shows_a_busy_day(t *testing.T) {
	br := browsertest.New(t)
	clock := &busyClock{}
	end := time.Now().UTC().Truncate(time.Minute).Add(-20 * time.Second)
	clock.set(end.Add(-24 * time.Hour))
	q, err := local.Open(context.Background(), t.TempDir(), local.Options{Now: clock.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	events := playDay(t, q, clock, end)
	time.Sleep(100 * time.Millisecond) // the last attempt's entry rides the writer's next commit

	c, err := console.New(console.Config{
		Support: &support.Service{Source: support.Backend{Q: q, ReadOnly: true}, History: q, Grouper: q, Stats: q.Stats, Now: clock.Now},
		Auth:    httpauth.New("x-dvrelay-secret", []byte(secret)), DataverseURL: "https://contoso.crm4.dynamics.com",
		Backend: "embedded", Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	base := srv.URL + "/console/"
	dir := filepath.Join("testdata", "screenshots")
	if os.Getenv("DVRELAY_DOCS_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "img")
	}
	shot := func(name string) { br.Screenshot(t, filepath.Join(dir, "console-"+name+".png")) }
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	br.Do(t, "sign in", chromedp.Navigate(base), chromedp.WaitVisible(css(`#secret`)),
		chromedp.SendKeys(css(`#secret`), secret), chromedp.Click(css(`#signin`)), chromedp.WaitVisible(css(`#stat-deadlettered`)))
	shot("overview")

	br.Do(t, "dead letters", chromedp.Navigate(base+"deadletters"), chromedp.WaitVisible(css(`#resubmit-all`)))
	shot("deadletters")

	br.Do(t, "search the record", chromedp.SendKeys(css(`input[name=q]`),
		"https://contoso.crm4.dynamics.com/main.aspx?appid=6f1d&pagetype=entityrecord&etn=opportunity&id=%7B"+strings.ToUpper(showcase)+"%7D\n"),
		chromedp.WaitVisible(css(`#events`)))
	ids := browsertest.Read(t, br, "events", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events tbody tr td:nth-child(4)')).map(td => td.innerText.trim())`))
	outcomes := browsertest.Read(t, br, "outcomes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events .outcome')).map(e => e.textContent.trim())`))
	if fmt.Sprint(ids) != fmt.Sprint(events) || fmt.Sprint(outcomes) != "[completed completed completed dead-lettered]" {
		t.Errorf("record page lists %v %v, want %v completed, completed, completed, dead-lettered", ids, outcomes, events)
	}
	shot("record")

	br.Do(t, "the event", chromedp.Navigate(base+"event?id="+events[3]), chromedp.WaitVisible(css(`#timeline`)))
	shot("event")
	br.Do(t, "the resubmitted event", chromedp.Navigate(base+"event?id="+events[2]), chromedp.WaitVisible(css(`#timeline`)))
	shot("event-resubmitted")

	br.Do(t, "filtered dead letters", chromedp.Navigate(base+"deadletters?reason=PermanentFailure&entity=opportunity"),
		chromedp.WaitVisible(css(`#resubmit-all`)))
	matched := browsertest.Read(t, br, "matches", chromedp.Evaluate[int](`document.querySelectorAll('table.list tbody tr').length`))
	br.Do(t, "bulk preview", chromedp.Click(css(`#resubmit-all`)), chromedp.WaitVisible(css(`#preview`)))
	previewed := browsertest.Read(t, br, "previewed", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#preview tbody tr td:nth-child(3)')).map(td => td.innerText.trim())`))
	if len(previewed) != matched {
		t.Errorf("the preview lists %d dead letters, the filter matches %d", len(previewed), matched)
	}
	for _, ev := range previewed {
		if !strings.HasSuffix(ev, " opportunity") {
			t.Errorf("the preview of entity=opportunity lists %q", ev)
		}
	}
	shot("preview")
	if br.Dialogs.Load() != 0 {
		t.Errorf("%d dialogs opened", br.Dialogs.Load())
	}
}
