package main

// The reliability suite: the real binary under hostile input, slow clients and repeated
// SIGKILL, on loopback, each test bounded. What it checks is what an operator relies on when
// the intake faces the internet: every bad request gets its precise answer and queues nothing,
// the process stays up with bounded memory, slow clients cannot hold it, and nothing answered
// 202 is lost to a crash.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const reliabilitySecret = "reliability-s3cret"

// hostileCase is one request and the answer it must get.
type hostileCase struct {
	name    string
	method  string
	header  http.Header // added to the secret and Content-Type, or replacing them
	body    []byte
	chunked bool // send without Content-Length
	status  int
}

// catchAllRoutes writes a routes file that sends every event to url, so any event queued
// reaches the downstream double there, keyed by its EventId.
func catchAllRoutes(t testing.TB, url string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routes.json")
	routes := fmt.Sprintf(`{"routes": [{"name": "all", "steps": [{"name": "sink", "type": "http", "url": %q, "timeout": "10s"}]}]}`, url)
	if err := os.WriteFile(path, []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServe_answers_hostile_requests_precisely_queues_none_and_stays_up(t *testing.T) {
	sink := newDownstream(t, `{}`)
	p := startServe(t, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_WEBHOOK_SECRET="+reliabilitySecret,
		"DVRELAY_ROUTES="+catchAllRoutes(t, sink.srv.URL),
	))
	cases := hostileCases(t)
	if len(cases) < 200 {
		t.Fatalf("only %d hostile cases run; the suite promises at least 200", len(cases))
	}

	client := &http.Client{Timeout: 30 * time.Second}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				sendHostile(t, client, p.addr, c)
			})
		}
	})

	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("the process exited: %v", err)
	default:
	}
	// Nothing was queued: an event that had been would reach the sink before this one.
	sentinel := mustAcceptWith(t, p.addr, sampleEvent(t), http.Header{"X-Dvrelay-Secret": {reliabilitySecret}})
	eventually(t, "the sentinel event at the sink", func() bool { return sink.count(sentinel.EventID) == 1 })
	sink.mu.Lock()
	reached := len(sink.calls)
	sink.mu.Unlock()
	if reached != 1 {
		t.Errorf("%d events reached the sink, want only the sentinel", reached)
	}
	eventually(t, "an idle queue", func() bool {
		h := health(t, p.addr)
		return h["queued"] == float64(0) && h["scheduled"] == float64(0)
	})
	if h := health(t, p.addr); h["deadLettered"] != float64(0) {
		t.Errorf("health after the hostile requests = %v", h)
	}
	assertMemoryBounded(t, p.cmd.Process.Pid)
}

// sendHostile sends c and checks its answer: the status, and a problem document saying the same.
func sendHostile(t *testing.T, client *http.Client, addr string, c hostileCase) {
	t.Helper()
	var body io.Reader = bytes.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(bytes.NewReader(c.body)) // hides the length: sent chunked
	}
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, "http://"+addr+"/api/dataverse/webhook", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Dvrelay-Secret", reliabilitySecret)
	for k, v := range c.header {
		if v == nil {
			req.Header.Del(k)
			continue
		}
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != c.status {
		t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, c.status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var prob struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(b, &prob); err != nil || prob.Status != c.status || prob.Type == "" {
		t.Errorf("problem %.300s (%v)", b, err)
	}
	if c.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("Allow = %q", resp.Header.Get("Allow"))
	}
	if bytes.Contains(b, []byte(reliabilitySecret)) {
		t.Error("the answer echoes the secret")
	}
}

func mustAcceptWith(t *testing.T, addr string, body []byte, header http.Header) accepted {
	t.Helper()
	resp, b, err := post(context.Background(), addr, body, header)
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

// maxRSSMiB bounds the process's memory after the hostile requests, peak included. Idle it
// holds about 20 MiB; the bound is generous, and still far below what one deeply nested body
// used to cost (+110 MiB each, kept).
const maxRSSMiB = 300

func assertMemoryBounded(t *testing.T, pid int) {
	t.Helper()
	if raceBuild {
		t.Log(memoryNotCheckedUnderRace)
		return
	}
	for _, field := range []string{"VmRSS", "VmHWM"} {
		kib, ok := procStatusKiB(pid, field)
		if !ok {
			t.Logf("no %s in /proc/%d/status; memory not checked", field, pid)
			continue
		}
		if kib/1024 >= maxRSSMiB {
			t.Errorf("%s = %d MiB, want under %d MiB", field, kib/1024, maxRSSMiB)
		}
	}
}

// memoryNotCheckedUnderRace says why a memory bound is not asserted on a binary built with the
// race detector: its shadow memory and instrumented allocations multiply the footprint, so the
// figure says nothing about the product's. .ci/run runs these tests again without it.
const memoryNotCheckedUnderRace = "memory not checked: the binary runs under the race detector (.ci/run checks it in a run without)"

// procStatusKiB reads one kB field of /proc/<pid>/status (Linux).
func procStatusKiB(pid int, field string) (int, bool) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb, true
			}
		}
	}
	return 0, false
}

// hostileCases builds the requests: malformed, truncated, oversized, deeply nested, huge-number,
// wrongly typed, forged, wrong media type and wrong method.
func hostileCases(t *testing.T) []hostileCase {
	t.Helper()
	native := sampleEvent(t)
	plugin, err := os.ReadFile(filepath.Join("..", "samples", "plugin-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []hostileCase
	add := func(c hostileCase) { cases = append(cases, c) }
	const bad, unauthorized, tooLarge, unsupported, notAllowed = http.StatusBadRequest, http.StatusUnauthorized,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed

	// Malformed: not JSON, or JSON that is not an object.
	for i, b := range []string{
		"", " ", "{", "}", "[]", "[{}]", "null", "true", "0", "-1", `"a string"`, "{\"a\":}", "{'a':1}",
		"{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":1}{", "{} x", "{\"a\":1}]", "NaN", "{\"a\":NaN}",
		"{\"a\":Infinity}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\x41\"}",
		"{\"a\":\"tab\there\"}", "{/* comment */}", "\xff\xfe{\x00}", "{\"a\":\"\xff\"", "\x00",
		strings.Repeat("[", 100) + strings.Repeat("]", 100), "<event/>", "a=1&b=2",
	} {
		add(hostileCase{name: fmt.Sprintf("malformed/%02d", i), body: []byte(b), status: bad})
	}

	// Truncated: the native sample cut short at 80 points before its closing brace.
	end := bytes.LastIndexByte(native, '}')
	for i := range 80 {
		at := end * i / 80
		add(hostileCase{name: fmt.Sprintf("truncated/at-%d", at), body: native[:at], status: bad})
	}
	for _, at := range []int{end / 3, end / 2} { // sent chunked: no length tells the cut
		add(hostileCase{name: fmt.Sprintf("truncated/chunked-at-%d", at), body: native[:at], chunked: true, status: bad})
	}

	// Oversized: past DVRELAY_MAX_BODY_BYTES (1 MiB), declared or only found out while reading.
	for _, size := range []int{1<<20 + 1, 2 << 20, 4 << 20} {
		big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), size)...)
		big = append(big, `"}`...)
		add(hostileCase{name: fmt.Sprintf("oversized/declared-%d", size), body: big, status: tooLarge})
		add(hostileCase{name: fmt.Sprintf("oversized/chunked-%d", size), body: big, chunked: true, status: tooLarge})
	}
	add(hostileCase{name: "oversized/padded-valid-event", body: append(bytes.Repeat([]byte(" "), 1<<20), native...), status: tooLarge})

	// Deeply nested and huge numbers inside otherwise valid events.
	for _, depth := range []int{65, 1000, 9990} {
		add(hostileCase{name: fmt.Sprintf("nested/arrays-%d", depth), body: withAttribute(t, native, strings.Repeat("[", depth)+strings.Repeat("]", depth)),
			status: bad})
		add(hostileCase{name: fmt.Sprintf("nested/objects-%d", depth), body: withAttribute(t, native, strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth)),
			status: bad})
	}
	for i, n := range []string{"1e999999", "-1e999999", "1e-999999", strings.Repeat("9", 5000), "1" + strings.Repeat("0", 400) + ".5"} {
		add(hostileCase{name: fmt.Sprintf("huge-number/attribute-%d", i), body: withAttribute(t, native, n), status: bad})
		add(hostileCase{name: fmt.Sprintf("huge-number/money-%d", i), body: bytes.Replace(native, []byte("12500.0000"), []byte(n), 1), status: bad})
	}
	add(hostileCase{name: "huge-number/plugin-changed-fields", status: bad,
		body: withField(t, plugin, "ChangedFields", json.RawMessage("["+strings.TrimSuffix(strings.Repeat("1e999999,", 2000), ",")+"]"))})

	// Wrongly typed: each field the intake reads, given a value of the wrong type or form. A
	// null or missing id is no longer among them: a real context may lack it, and the event
	// then leaves it out (internal/event's tests hold those cases).
	wrong := []string{`1`, `true`, `[]`, `{}`, `"x"`, `""`}
	for _, field := range []string{"CorrelationId", "OrganizationId", "PrimaryEntityId", "UserId", "BusinessUnitId", "InitiatingUserId"} {
		for _, v := range wrong {
			add(hostileCase{name: "wrong-type/" + field + "=" + v, body: withField(t, native, field, json.RawMessage(v)), status: bad})
		}
	}
	for field, values := range map[string][]string{
		"MessageName":        {`1`, `null`, `[]`, `"1Update"`, `"Up date"`, `""`},
		"PrimaryEntityName":  {`1`, `"Opportunity!"`, `"OPPORTUNITY"`, `""`, `"` + strings.Repeat("a", 129) + `"`},
		"Depth":              {`"1"`, `-1`, `1.5`, `100001`, `[]`},
		"InputParameters":    {`"x"`, `1`, `{}`, `[1]`, `[{"key":"Target"}]`},
		"OperationCreatedOn": {`"yesterday"`, `1`, `"/Date(x)/"`},
		"OperationId":        {`1`, `"nope"`, `{}`},
		"RequestId":          {`1`, `"nope"`},
		"OwningExtension":    {`"x"`, `1`, `{"Id":1}`, `{"LogicalName":"Bad Name"}`},
		"ParentContext":      {`"x"`, `1`, `[]`},
		"PostEntityImages":   {`"x"`, `{}`, `1`},
		"PreEntityImages":    {`"x"`, `1`},
	} {
		for _, v := range values {
			add(hostileCase{name: "wrong-type/" + field + "=" + shorten(v), body: withField(t, native, field, json.RawMessage(v)), status: bad})
		}
	}
	for field, values := range map[string][]string{
		"EventName":     {`1`, `null`, `"lowercase"`, `"Has Space"`},
		"RecordId":      {`1`, `"nope"`, `null`},
		"TriggeredBy":   {`1`, `""`, `[]`},
		"Timestamp":     {`1`, `"yesterday"`, `"2025-11-25"`, `"2025-11-25T07:04:05"`},
		"ChangedFields": {`"name"`, `[1]`, `["Bad Name"]`},
	} {
		for _, v := range values {
			add(hostileCase{name: "wrong-type/plugin-" + field + "=" + shorten(v), body: withField(t, plugin, field, json.RawMessage(v)), status: bad})
		}
	}
	for _, missing := range []string{"MessageName"} {
		add(hostileCase{name: "wrong-type/missing-" + missing, body: withoutField(t, native, missing), status: bad})
	}

	// Forged: the right body without the right secret. The body is never read for these.
	for name, h := range map[string]http.Header{
		"no-secret":            {"X-Dvrelay-Secret": nil},
		"empty-secret":         {"X-Dvrelay-Secret": {""}},
		"wrong-secret":         {"X-Dvrelay-Secret": {"guess"}},
		"secret-prefix":        {"X-Dvrelay-Secret": {reliabilitySecret[:len(reliabilitySecret)-1]}},
		"secret-suffix":        {"X-Dvrelay-Secret": {reliabilitySecret + "x"}},
		"secret-upper-case":    {"X-Dvrelay-Secret": {strings.ToUpper(reliabilitySecret)}},
		"secret-other-header":  {"X-Dvrelay-Secret": nil, "X-Functions-Key": {reliabilitySecret}},
		"secret-as-bearer":     {"X-Dvrelay-Secret": nil, "Authorization": {"Bearer " + reliabilitySecret}},
		"secret-wrong-first":   {"X-Dvrelay-Secret": {"guess", reliabilitySecret}},
		"secret-with-tab":      {"X-Dvrelay-Secret": {reliabilitySecret[:5] + "\t" + reliabilitySecret[5:]}},
		"secret-long":          {"X-Dvrelay-Secret": {strings.Repeat(reliabilitySecret, 100)}},
		"secret-other-unicode": {"X-Dvrelay-Secret": {"reliability-s3crеt"}}, // Cyrillic е
	} {
		add(hostileCase{name: "forged/" + name, body: native, header: h, status: unauthorized})
	}
	add(hostileCase{name: "forged/oversized-chunked", chunked: true, header: http.Header{"X-Dvrelay-Secret": {"guess"}},
		body: bytes.Repeat([]byte("x"), 2<<20), status: unauthorized})

	// Wrong media type and wrong method.
	for _, ct := range []string{"text/plain", "application/xml", "text/json", "application/jsonx", "multipart/form-data; boundary=x",
		"application/x-www-form-urlencoded", "application/json; =;", "json"} {
		add(hostileCase{name: "media-type/" + shorten(ct), body: native, header: http.Header{"Content-Type": {ct}}, status: unsupported})
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		add(hostileCase{name: "method/" + m, method: m, body: native, status: notAllowed})
	}
	return cases
}

// withField returns the JSON object doc with field set to v.
func withField(t *testing.T, doc []byte, field string, v json.RawMessage) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = v
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func withoutField(t *testing.T, doc []byte, field string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, field)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withAttribute returns the native event with one more Target attribute whose value is the raw
// JSON v: where a hostile value sits inside an otherwise valid event.
func withAttribute(t *testing.T, native []byte, v string) []byte {
	t.Helper()
	anchor := []byte(`"Attributes": [{`)
	i := bytes.Index(native, anchor)
	if i < 0 {
		t.Fatal("the sample has no Target attributes")
	}
	out := append([]byte{}, native[:i+len(anchor)-1]...)
	out = append(out, `{"key": "new_hostile", "value": `+v+`}, `...)
	return append(out, native[i+len(anchor)-1:]...)
}

func shorten(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

func TestServe_cuts_off_slow_clients_and_keeps_serving_others(t *testing.T) {
	t.Parallel()
	const maxConnections = 16
	p := startServe(t, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_READ_HEADER_TIMEOUT=1s",
		"DVRELAY_READ_TIMEOUT=2s",
		fmt.Sprintf("DVRELAY_MAX_CONNECTIONS=%d", maxConnections),
		"DVRELAY_MAX_INFLIGHT=8",
	))

	// More slow clients than the connection cap: headers dribbled, and bodies dribbled.
	stop := make(chan struct{})
	defer close(stop)
	var cut sync.WaitGroup
	cutOff := make(chan string, 64)
	dribble := func(name, head string, unit string) {
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		cut.Add(1)
		go func() { // write a little, often, until the server hangs up
			for {
				if _, err := io.WriteString(conn, unit); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
		go func() {
			defer cut.Done()
			defer conn.Close()
			_, _ = io.WriteString(conn, head)
			_, _ = io.Copy(io.Discard, conn) // returns when the server closes the connection
			cutOff <- name
		}()
	}
	for i := range 24 {
		dribble(fmt.Sprintf("headers-%d", i), "POST /api/dataverse/webhook HTTP/1.1\r\nHost: x\r\n", "X-Slow: 1\r\n")
	}
	for i := range 4 {
		dribble(fmt.Sprintf("body-%d", i), "POST /api/dataverse/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Content-Length: 9000\r\n\r\n{", " ")
	}

	// Meanwhile the process holds no more client connections than the cap: watch its sockets
	// until it has taken as many as the cap allows, and a little longer.
	most, settled := 0, 0
	for deadline := time.Now().Add(10 * time.Second); settled < 10 && time.Now().Before(deadline); {
		n, ok := openSockets(p.cmd.Process.Pid)
		if !ok {
			t.Log("no /proc/<pid>/fd here; the connection cap is not checked")
			break
		}
		most = max(most, n)
		if most >= maxConnections {
			settled++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if most > maxConnections+1 { // + the listener
		t.Errorf("the process held %d sockets with 28 slow clients, cap %d", most, maxConnections)
	}

	// A legitimate caller is served while slow clients keep arriving.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, b, err := post(ctx, p.addr, sampleEvent(t), nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a legitimate post among slow clients: %v %s", err, b)
	}

	all := make(chan struct{})
	go func() { cut.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatalf("the server kept %d slow connections open", 28-len(cutOff))
	}
	if h := health(t, p.addr); h["status"] != "ok" {
		t.Errorf("health after slow clients = %v", h)
	}
}

// openSockets counts a process's open sockets (Linux).
func openSockets(pid int) (int, bool) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, true
}

func TestServe_processes_every_accepted_event_across_repeated_SIGKILL_under_load(t *testing.T) {
	t.Parallel()
	sink := newDownstream(t, `{}`)
	sink.slowDown(20 * time.Millisecond) // keep deliveries in flight when the kill lands
	dir, addr := t.TempDir(), freeAddr(t)
	env := baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_ROUTES="+catchAllRoutes(t, sink.srv.URL),
		"DVRELAY_WORKER_CONCURRENCY=4",
		"DVRELAY_LOCK_DURATION=5s",
	)
	var (
		mu    sync.Mutex
		taken []string // EventIds answered 202
	)
	const rounds, perRound = 3, 80
	for round := range rounds {
		p := startServe(t, dir, addr, env)
		var (
			wg         sync.WaitGroup
			thisRound  int
			enough     = make(chan struct{})
			closeOnce  sync.Once
			killed     = make(chan struct{})
			clientDone = context.Background()
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-killed:
						return
					default:
					}
					resp, b, err := post(clientDone, addr, sampleEvent(t), nil)
					if err != nil || resp.StatusCode != http.StatusAccepted {
						continue // not accepted: the caller retries; not ours to keep
					}
					var a accepted
					if json.Unmarshal(b, &a) != nil {
						continue
					}
					mu.Lock()
					taken = append(taken, a.EventID)
					thisRound++
					if thisRound >= perRound {
						closeOnce.Do(func() { close(enough) })
					}
					mu.Unlock()
				}
			}()
		}
		<-enough
		p.stop(t, syscall.SIGKILL)
		close(killed)
		wg.Wait()
		t.Logf("round %d: %d accepted before SIGKILL", round+1, thisRound)
	}

	p := startServe(t, dir, addr, env)
	mu.Lock()
	ids := append([]string(nil), taken...)
	mu.Unlock()
	for _, id := range ids {
		eventually(t, "event "+id+" at the sink after the last restart", func() bool { return sink.count(id) >= 1 })
	}
	eventually(t, "an empty queue", func() bool { return health(t, p.addr)["queued"] == float64(0) })
	if h := health(t, p.addr); h["deadLettered"] != float64(0) {
		t.Errorf("health = %v: an accepted event was dead-lettered", h)
	}
}

func TestServe_slow_authenticated_uploads_turn_no_legitimate_event_away(t *testing.T) {
	const maxInFlight, maxConnections, slowSenders, legitimate = 4, 24, 20, 30
	p := startServe(t, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_WEBHOOK_SECRET="+reliabilitySecret,
		"DVRELAY_READ_TIMEOUT=20s",
		fmt.Sprintf("DVRELAY_MAX_INFLIGHT=%d", maxInFlight),
		fmt.Sprintf("DVRELAY_MAX_CONNECTIONS=%d", maxConnections),
	))

	// Senders with the secret that send a byte of their body a second: five times as many as
	// the in-flight places, nearly every connection the cap allows.
	stop := make(chan struct{})
	var senders sync.WaitGroup
	defer func() { close(stop); senders.Wait() }()
	for range slowSenders {
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		senders.Add(1)
		go func() {
			defer senders.Done()
			defer conn.Close()
			head := "POST /api/dataverse/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"X-Dvrelay-Secret: " + reliabilitySecret + "\r\nContent-Length: 5000\r\n\r\n{"
			if _, err := io.WriteString(conn, head); err != nil {
				return
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				if _, err := io.WriteString(conn, " "); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // let the server take every slow sender's headers

	secret := http.Header{"X-Dvrelay-Secret": {reliabilitySecret}}
	for i := range legitimate {
		resp, b, err := post(context.Background(), p.addr, sampleEvent(t), secret)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("legitimate event %d among %d slow senders: status %d, want 202: %s", i+1, slowSenders, resp.StatusCode, b)
		}
	}
}

// smallDisk mounts a tmpfs of size bytes for the test, or skips it where mounting is not allowed
// (it needs root, or CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a small disk here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes a file that leaves about spare bytes free on the disk at dir.
func fillDisk(t *testing.T, dir string, spare int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	path := filepath.Join(dir, "filler")
	if err := os.WriteFile(path, make([]byte, max(free-spare, 0)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// probeHealth asks for health as a probe does, giving up after 2 s.
func probeHealth(t *testing.T, addr string) int {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/api/health")
	if err != nil {
		t.Fatalf("health gave no answer within 2 s: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServe_health_answers_503_within_2s_on_a_full_disk_and_200_once_it_has_room(t *testing.T) {
	data := smallDisk(t, 16<<20)
	p := startServe(t, data, freeAddr(t), baseEnv("DVRELAY_LOG_LEVEL=warn"))
	filler := fillDisk(t, data, 16<<10)

	refused := false
	for range 500 {
		resp, _, err := post(context.Background(), p.addr, sampleEvent(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("500 posts on a full disk were all accepted")
	}
	if code := probeHealth(t, p.addr); code != http.StatusServiceUnavailable {
		t.Errorf("health while the disk is full: %d, want 503", code)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, p.addr, sampleEvent(t))
	if code := probeHealth(t, p.addr); code != http.StatusOK {
		t.Errorf("health once the disk has room and an event was queued: %d, want 200", code)
	}
}

func TestServe_writes_a_downstream_URL_query_to_no_log_line_and_no_dead_letter(t *testing.T) {
	const marker = "k3y-in-the-query-7f1c"
	// The ERP answers 301 to the same path with a slash, repeating the query, as http→https
	// and trailing-slash redirects do.
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.Host+r.URL.Path+"/?"+r.URL.RawQuery+"#"+marker, http.StatusMovedPermanently)
	}))
	defer erp.Close()
	p := startServe(t, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_ROUTES="+catchAllRoutes(t, "${DVRELAY_ERP_URL}"),
		"DVRELAY_ERP_URL="+erp.URL+"/erp?code="+marker,
		"DVRELAY_LOG_FORMAT=json",
	))
	mustAccept(t, p.addr, sampleEvent(t))
	eventually(t, "the event dead-lettered for the refused redirect", func() bool {
		return health(t, p.addr)["deadLettered"] == float64(1)
	})

	resp, err := http.Get("http://" + p.addr + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(dead, []byte("redirect refused")) {
		t.Fatalf("the dead letter does not say the redirect was refused: %s", dead)
	}
	if bytes.Contains(dead, []byte(marker)) {
		t.Errorf("the dead letter carries the query's value: %s", dead)
	}
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, marker) {
			t.Errorf("a log line carries the query's value: %s", line)
		}
	}
}

// maxRSSUnderBigBodiesMiB is the memory limit the handler sets itself (GOMEMLIMIT, see gc.go):
// costly bodies in parallel must not push the process past it.
const maxRSSUnderBigBodiesMiB = 256

// maxRSSUnder256KBBodiesMiB is issue 23's bound for the largest body Dataverse posts from Azure
// (256 KB), 32 clients at once: the process's memory must not grow with the body's size.
const maxRSSUnder256KBBodiesMiB = 100

func TestServe_bounds_memory_by_the_bytes_in_flight_when_many_clients_post_big_valid_bodies(t *testing.T) {
	// About 1 MB, valid: one long text column, as an email's HTML description can be.
	filler := `"` + strings.Repeat("<p>long text</p>", 60_000) + `"`
	postBigBodiesWithin(t, 64, 4, filler, 900_000, 1<<20, maxRSSUnderBigBodiesMiB)
}

func TestServe_bounds_memory_under_100_MiB_when_32_clients_post_256_KB_bodies(t *testing.T) {
	// One long text column brings a distinct sample event to just under 256 KB.
	filler := `"` + strings.Repeat("<p>long text</p>", (256<<10-len(sampleEvent(t))-200)/16) + `"`
	postBigBodiesWithin(t, 32, 25, filler, 250<<10, 256<<10, maxRSSUnder256KBBodiesMiB)
}

// unreadBodyDiscardBytes is how much of an unread request body net/http's server reads after the
// handler to keep the connection open; past it the server closes the connection instead.
const unreadBodyDiscardBytes = 256 << 10

// resetWhileSending stands for a post whose connection was reset while its body was being sent.
const resetWhileSending = -1

// postBigBodiesWithin has clients post rounds distinct valid events each, every one carrying the
// raw JSON filler as one more attribute (a body of minBytes to maxBytes), to a real handler serve.
// Each must be accepted or turned away with 503, some must be accepted, and the process's peak RSS
// must stay under maxRSSMiB (checked on the binary as shipped, not under the race detector).
func postBigBodiesWithin(t *testing.T, clients, rounds int, filler string, minBytes, maxBytes, maxRSSMiB int) {
	t.Helper()
	sink := newDownstream(t, `{}`)
	p := startServe(t, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_ROUTES="+catchAllRoutes(t, sink.srv.URL),
	))
	var (
		mu     sync.Mutex
		status = map[int]int{}
		wg     sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				body := withAttribute(t, sampleEvent(t), filler)
				if len(body) > maxBytes || len(body) < minBytes {
					t.Errorf("the body is %d bytes, want %d to %d", len(body), minBytes, maxBytes)
					return
				}
				resp, _, err := post(context.Background(), p.addr, body, nil)
				code := 0
				switch {
				case err == nil:
					code = resp.StatusCode
				case len(body) > unreadBodyDiscardBytes && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
					// Turned away unread: net/http closes a connection whose unread body is
					// past 256 KB once it has answered, and a client still sending may see the
					// reset before it reads the 503. Dataverse retries either.
					code = resetWhileSending
				default:
					t.Error(err)
					return
				}
				mu.Lock()
				status[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("answers to %d posts of up to %d bytes (%d: reset while sending): %v", clients*rounds, maxBytes, resetWhileSending, status)
	if status[http.StatusAccepted] == 0 {
		t.Error("no big body was accepted")
	}
	if other := clients*rounds - status[http.StatusAccepted] - status[http.StatusServiceUnavailable] - status[resetWhileSending]; other != 0 {
		t.Errorf("%d answers were neither 202 nor 503: %v", other, status)
	}
	if kib, ok := procStatusKiB(p.cmd.Process.Pid, "VmHWM"); ok {
		t.Logf("peak RSS %d MiB", kib/1024)
		if raceBuild {
			t.Log(memoryNotCheckedUnderRace)
		} else if kib/1024 >= maxRSSMiB {
			t.Errorf("peak RSS %d MiB, want under %d MiB", kib/1024, maxRSSMiB)
		}
	}
}

// startServeWithFileLimit starts handler serve as startServe does, under `ulimit -n limit`.
func startServeWithFileLimit(t *testing.T, limit int, dataDir, addr string, env []string) *process {
	t.Helper()
	p := &process{addr: addr, out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, limit),
		binaryPath, "serve", "--addr", addr, "--data-dir", dataDir)
	p.cmd.Env, p.cmd.Dir = env, appRoot
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("handler output:\n%s", p.out.String())
		}
	})
	eventually(t, "handler serve answering health", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("handler serve exited at start: %v\n%s", err, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/api/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func TestServe_keeps_file_descriptors_for_the_queue_and_the_worker_when_idle_clients_come_by_the_thousand(t *testing.T) {
	const fileLimit, idleClients = 400, 1000
	// What DVRELAY_MAX_CONNECTIONS defaults to under that limit: the worker's 16 connections in
	// use and the 100 its clients keep idle, and 32 for the process's own files, are left out.
	const connectionCap = fileLimit - 32 - 16 - 100
	sink := newDownstream(t, `{}`)
	p := startServeWithFileLimit(t, fileLimit, t.TempDir(), freeAddr(t), baseEnv(
		"DVRELAY_LOG_LEVEL=warn",
		"DVRELAY_READ_HEADER_TIMEOUT=1s",
		"DVRELAY_ROUTES="+catchAllRoutes(t, sink.srv.URL),
	))
	pid := p.cmd.Process.Pid // sh exec'd the handler: same process

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range idleClients {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatalf("dial after %d idle clients: %v", len(idle), err)
		}
		idle = append(idle, c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, b, err := post(ctx, p.addr, sampleEvent(t), nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a post among %d idle clients: %v %s", idleClients, err, b)
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event at the downstream", func() bool { return sink.count(a.EventID) == 1 })
	if n, ok := openSockets(pid); ok && n > connectionCap+1+100 { // + the listener, + the worker's
		t.Errorf("the process holds %d sockets, cap %d", n, connectionCap)
	}
	if out := p.out.String(); strings.Contains(out, "too many open files") {
		t.Errorf("the process ran out of file descriptors:\n%s", out)
	}
}

func TestServe_logs_a_full_disk_within_the_refusal_budget_not_once_a_post(t *testing.T) {
	const posts = 300
	data := smallDisk(t, 16<<20)
	p := startServe(t, data, freeAddr(t), baseEnv("DVRELAY_LOG_LEVEL=info", "DVRELAY_LOG_FORMAT=json"))
	fillDisk(t, data, 16<<10)
	before := len(strings.Split(p.out.String(), "\n"))

	start := time.Now()
	refused := 0
	for range posts {
		resp, _, err := post(context.Background(), p.addr, sampleEvent(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			refused++
		}
	}
	if refused < posts-10 {
		t.Fatalf("only %d of %d posts were refused on a full disk", refused, posts)
	}
	seconds := int(time.Since(start).Seconds()) + 2
	time.Sleep(1500 * time.Millisecond) // the last second's count line
	lines := strings.Split(p.out.String(), "\n")[before:]
	byMsg := map[string]int{}
	for _, l := range lines {
		var rec struct{ Level, Msg string }
		if json.Unmarshal([]byte(l), &rec) == nil {
			byMsg[rec.Level+" "+rec.Msg]++
		}
	}
	t.Logf("%d posts refused in about %d s wrote: %v", refused, seconds, byMsg)
	// The intake's budget: 10 lines a second per outcome, and one line a second counting the rest.
	if most := seconds * 11 * 2; len(lines) > most {
		t.Errorf("%d log lines for %d refused posts in %d s, want at most %d", len(lines), refused, seconds, most)
	}
}
