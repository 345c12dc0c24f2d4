package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// parentID is the account opportunityEvent's parentaccountid points at.
const parentID = "22222222-3333-4444-5555-666666666666"

const (
	lookupTable = "@Microsoft.Dynamics.CRM.lookuplogicalname"
	formatted   = "@OData.Community.Display.V1.FormattedValue"
)

// newReadDouble is a Web API double holding opportunities, accounts and notes, answering only
// requests that carry the worker's token.
func newReadDouble(t *testing.T) *dataversetest.Server {
	t.Helper()
	dv := dataversetest.NewServer(t,
		dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities"},
		dataversetest.Table{LogicalName: "account", EntitySet: "accounts"},
		dataversetest.Table{LogicalName: "annotation", EntitySet: "annotations"},
	)
	dv.RequireToken("read-token")
	return dv
}

// readWorker is a worker over routes whose Dataverse steps talk to dv; a nil dv is a deployment
// without DATAVERSE_URL.
func readWorker(t *testing.T, h *harness, dv *dataversetest.Server, routes string) *worker.Worker {
	t.Helper()
	if !strings.HasSuffix(routes, ".json") {
		routes = writeRoutes(t, routes)
	}
	return h.worker(t, worker.Config{RoutesPath: routes}, func(d *worker.Deps) {
		d.Dataverse = nil
		if dv == nil {
			return
		}
		c, err := dataverse.NewClient(dv.URL(), dataversetest.StaticCredential{Token: "read-token"}, &dataverse.Options{Now: func() time.Time { return h.now }})
		if err != nil {
			t.Fatal(err)
		}
		d.Dataverse = c
	})
}

// trimmedOpportunity is opportunityEvent as Dataverse sends it above 256 KB: no columns.
func trimmedOpportunity(ev map[string]any) {
	delete(ev, "Attributes")
	ev["ChangedFields"] = []string{}
	ev["Trimmed"] = true
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %s", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is not JSON: %s", want)
	}
	return reflect.DeepEqual(g, w)
}

// gets returns the record reads the double received (metadata lookups left out).
func gets(dv *dataversetest.Server) []dataversetest.Request {
	var out []dataversetest.Request
	for _, r := range dv.Requests() {
		if r.Method == "GET" && !strings.Contains(r.Path, "EntityDefinitions") {
			out = append(out, r)
		}
	}
	return out
}

func TestDataverseRead_gives_a_trimmed_event_its_columns_back_for_later_steps(t *testing.T) {
	h := newHarness(t)
	dv := newReadDouble(t)
	dv.Seed("opportunities", map[string]any{
		"opportunityid":                        recordID,
		"name":                                 secretName,
		"estimatedvalue":                       json.Number("15000.50"),
		"_parentaccountid_value":               parentID,
		"_parentaccountid_value" + lookupTable: "account",
		"_parentaccountid_value" + formatted:   "Contoso",
		"estimatedvalue" + formatted:           "$15,000.50",
	})
	dv.Seed("accounts", map[string]any{"accountid": parentID, "creditlimit": json.Number("50000.0000")})
	w := readWorker(t, h, dv, `{"routes":[{"name":"trimmed","match":{"entity":"opportunity"},"steps":[
		{"name":"read-opportunity","type":"dataverse-read","select":["name","estimatedvalue","_parentaccountid_value"]},
		{"name":"read-account","type":"dataverse-read","record":"$steps.read-opportunity.parentaccountid","select":["creditlimit"]},
		{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}","body":{"select":["EventId","RecordId",
			"$steps.read-opportunity.estimatedvalue","$steps.read-opportunity.parentaccountid","$steps.read-account.creditlimit"]}}]}]}`)

	out := w.Process(context.Background(), delivery(t, opportunityEvent(trimmedOpportunity), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	reads := gets(dv)
	if len(reads) != 2 {
		t.Fatalf("reads = %v, want the opportunity then its account", reads)
	}
	if reads[0].Path != dataversetest.APIPath+"opportunities("+recordID+")" || reads[0].Query.Get("$select") != "name,estimatedvalue,_parentaccountid_value" {
		t.Errorf("first read = %s, want the event's record with the select list as $select", reads[0])
	}
	if reads[1].Path != dataversetest.APIPath+"accounts("+parentID+")" || reads[1].Query.Get("$select") != "creditlimit" {
		t.Errorf("second read = %s, want the account the first read's lookup names", reads[1])
	}
	for _, r := range reads {
		if r.Header.Get("X-Correlation-ID") != corrID {
			t.Errorf("%s carries X-Correlation-ID %q, want %q", r, r.Header.Get("X-Correlation-ID"), corrID)
		}
	}
	erp := h.erp.calls()
	if len(erp) != 1 {
		t.Fatalf("ERP calls = %d, want 1", len(erp))
	}
	want := `{"EventId":"` + eventID + `","RecordId":"` + recordID + `","steps":{
		"read-opportunity":{"estimatedvalue":15000.50,"parentaccountid":{"id":"` + parentID + `","logicalName":"account","name":"Contoso"}},
		"read-account":{"creditlimit":50000.0000}}}`
	if !sameJSON(t, erp[0].body, want) {
		t.Errorf("ERP body = %s\nwant %s", erp[0].body, want)
	}
	if strings.Contains(h.logs.String(), secretName) {
		t.Errorf("a column value read from Dataverse reached the log:\n%s", h.logs)
	}
}

func TestDataverseRead_reads_a_lookups_target_and_a_later_update_writes_its_value(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limit  any
		wantTo string
	}{
		{"a value is copied", json.Number("50000.0000"), `{"new_accountcreditlimit":50000.0000}`},
		{"an empty column is copied as null", nil, `{"new_accountcreditlimit":null}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			dv := newReadDouble(t)
			dv.Seed("opportunities", map[string]any{"opportunityid": recordID})
			dv.Seed("accounts", map[string]any{"accountid": parentID, "creditlimit": tt.limit})
			w := readWorker(t, h, dv, `{"routes":[{"name":"r","steps":[
				{"name":"read-account","type":"dataverse-read","record":"$event.Attributes.parentaccountid","select":["creditlimit"]},
				{"name":"copy-limit","type":"dataverse-update","set":{"new_accountcreditlimit":"$steps.read-account.creditlimit"}}]}]}`)

			out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			if reads := gets(dv); len(reads) != 1 || reads[0].Path != dataversetest.APIPath+"accounts("+parentID+")" {
				t.Errorf("reads = %v, want GET accounts(%s)", reads, parentID)
			}
			writes := dv.Writes()
			if len(writes) != 1 || writes[0].Path != dataversetest.APIPath+"opportunities("+recordID+")" || !sameJSON(t, writes[0].Body, tt.wantTo) {
				t.Fatalf("writes = %v, want PATCH opportunities(%s) %s", writes, recordID, tt.wantTo)
			}
		})
	}
}

func TestDataverseRead_reads_a_record_named_by_an_id_and_a_table(t *testing.T) {
	for name, record := range map[string]string{
		"an id in the event": `"$event.Attributes.new_erpaccountid"`,
		"a literal id":       `"` + parentID + `"`,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			dv := newReadDouble(t)
			dv.Seed("accounts", map[string]any{"accountid": parentID, "name": "Contoso"})
			w := readWorker(t, h, dv, `{"routes":[{"name":"r","steps":[
				{"name":"read-account","type":"dataverse-read","record":`+record+`,"entity":"account","select":["name"]}]}]}`)

			out := w.Process(context.Background(), delivery(t, opportunityEvent(func(ev map[string]any) {
				ev["Attributes"].(map[string]any)["new_erpaccountid"] = strings.ToUpper(parentID)
			}), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			if reads := gets(dv); len(reads) != 1 || reads[0].Path != dataversetest.APIPath+"accounts("+parentID+")" {
				t.Errorf("reads = %v, want GET accounts(%s)", reads, parentID)
			}
		})
	}
}

func TestDataverseRead_dead_letters_at_once_when_the_record_is_gone(t *testing.T) {
	h := newHarness(t)
	dv := newReadDouble(t) // no account: deleted after the event
	w := readWorker(t, h, dv, `{"routes":[{"name":"r","steps":[
		{"name":"read-account","type":"dataverse-read","record":"$event.Attributes.parentaccountid","select":["name"]},
		{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]}]}`)

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.DeadLetter || out.Reason != queue.ReasonPermanentFailure || out.Step != "read-account" {
		t.Fatalf("outcome = %+v, want dead-letter PermanentFailure at step read-account", out)
	}
	for _, want := range []string{"account(" + parentID + ")", "deleted", "404"} {
		if !strings.Contains(out.Description, want) {
			t.Errorf("description %q does not say %q", out.Description, want)
		}
	}
	if n := len(gets(dv)); n != 1 {
		t.Errorf("record reads = %d, want 1: a 404 is not retried", n)
	}
	if n := len(h.erp.calls()); n != 0 {
		t.Errorf("ERP calls = %d, want none after the failed read", n)
	}
}

func TestDataverseRead_retries_later_when_Dataverse_throttles_honouring_Retry_After(t *testing.T) {
	h := newHarness(t)
	dv := newReadDouble(t)
	dv.Seed("accounts", map[string]any{"accountid": parentID, "name": "Contoso"})
	w := readWorker(t, h, dv, `{"routes":[{"name":"r","steps":[
		{"name":"read-account","type":"dataverse-read","record":"$event.Attributes.parentaccountid","select":["name"]}]}]}`)
	if out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1)); out.Kind != queue.Complete {
		t.Fatalf("first delivery = %+v, want complete", out)
	}
	dv.ResetRequests()
	dv.Throttle(1, 5*time.Minute)

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.RetryLater || out.Attempt != 2 || out.Step != "read-account" {
		t.Fatalf("outcome = %+v, want retry-later as attempt 2 at step read-account", out)
	}
	if want := h.now.Add(5 * time.Minute); !out.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %s, want %s: the Retry-After Dataverse asked for", out.RetryAt, want)
	}
	if n := len(dv.Requests()); n != 1 {
		t.Errorf("requests = %d, want 1: a Retry-After longer than the quick waits is not waited out in process", n)
	}
}

func TestDataverseRead_is_skipped_with_the_steps_using_it_without_DATAVERSE_URL(t *testing.T) {
	h := newHarness(t)
	w := readWorker(t, h, nil, `{"routes":[{"name":"r","steps":[
		{"name":"read-account","type":"dataverse-read","record":"$event.Attributes.parentaccountid","select":["name"]},
		{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}","body":{"select":["EventId","$steps.read-account.name"]}},
		{"name":"log","type":"log"}]}]}`)

	out := w.Process(context.Background(), delivery(t, opportunityEvent(), 1))

	if out.Kind != queue.Complete {
		t.Fatalf("outcome = %+v, want complete", out)
	}
	if n := len(h.erp.calls()); n != 0 {
		t.Errorf("ERP calls = %d, want none: its body needs the skipped read", n)
	}
	skipped := map[string]string{}
	for _, l := range h.logs.lines(t) {
		if l["msg"] == "step" && l["status"] == "skipped" {
			skipped[l["step"].(string)], _ = l["why"].(string)
		}
	}
	if !strings.Contains(skipped["read-account"], "DATAVERSE_URL") || !strings.Contains(skipped["erp"], "read-account") {
		t.Errorf("skipped steps = %v, want read-account (DATAVERSE_URL) and erp (uses read-account)", skipped)
	}
}

func TestDataverseRead_has_nothing_to_do_when_the_reference_names_no_record_to_read(t *testing.T) {
	tests := map[string]struct {
		step   string
		adjust func(map[string]any)
	}{
		"empty lookup": {
			`{"name":"read","type":"dataverse-read","record":"$event.Attributes.parentaccountid","select":["name"]}`,
			func(ev map[string]any) { delete(ev["Attributes"].(map[string]any), "parentaccountid") },
		},
		"lookup to another table than entity": {
			`{"name":"read","type":"dataverse-read","record":"$event.Attributes.parentaccountid","entity":"contact","select":["fullname"]}`,
			nil,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			dv := newReadDouble(t)
			w := readWorker(t, h, dv, `{"routes":[{"name":"r","steps":[`+tt.step+`]}]}`)
			var adjust []func(map[string]any)
			if tt.adjust != nil {
				adjust = append(adjust, tt.adjust)
			}

			out := w.Process(context.Background(), delivery(t, opportunityEvent(adjust...), 1))

			if out.Kind != queue.Complete {
				t.Fatalf("outcome = %+v, want complete", out)
			}
			if n := len(dv.Requests()); n != 0 {
				t.Errorf("requests = %d, want none", n)
			}
		})
	}
}

func TestNew_rejects_a_dataverse_read_step_declared_wrong(t *testing.T) {
	tests := map[string]struct {
		step string
		want string
	}{
		"no select":                 {`{"name":"read","type":"dataverse-read"}`, "select"},
		"empty select":              {`{"name":"read","type":"dataverse-read","select":[]}`, "select"},
		"column not a name":         {`{"name":"read","type":"dataverse-read","select":["Credit Limit"]}`, `"Credit Limit" is not a column logical name`},
		"misspelt field":            {`{"name":"read","type":"dataverse-read","columns":["name"],"select":["name"]}`, "columns"},
		"entity without record":     {`{"name":"read","type":"dataverse-read","entity":"account","select":["name"]}`, "entity: only with record"},
		"literal that is not an id": {`{"name":"read","type":"dataverse-read","record":"Contoso","entity":"account","select":["name"]}`, "record: want"},
		"literal id without table":  {`{"name":"read","type":"dataverse-read","record":"` + parentID + `","select":["name"]}`, "record: want"},
		"reference to no step":      {`{"name":"read","type":"dataverse-read","record":"$steps.score.accountid","entity":"account","select":["name"]}`, `step "score" is not an earlier step`},
		"entity not a name":         {`{"name":"read","type":"dataverse-read","record":"$event.RecordId","entity":"Accounts!","select":["name"]}`, `entity: "Accounts!"`},
		"body select of no step":    {`{"name":"erp","type":"http","url":"http://127.0.0.1:1/","body":{"select":["$steps.read.name"]}}`, `step "read" is not an earlier step`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			path := writeRoutes(t, `{"routes":[{"name":"r1","steps":[`+tt.step+`]}]}`)
			_, err := worker.New(worker.Config{RoutesPath: path}, worker.Deps{Decoder: newDecoder(t), Settings: func(string) (string, bool) { return "", false }}, nil)
			if err == nil {
				t.Fatal("New accepted the routes file")
			}
			if !strings.Contains(err.Error(), `route "r1" step 1`) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the step and %q", err, tt.want)
			}
		})
	}
}

// The shipped routes.json reads a trimmed note back (samples/note-create-trimmed.json) and sends
// the columns to the ERP: the pattern docs/routes.md documents, end to end through the parser.
func TestShippedRoutes_send_a_trimmed_notes_columns_read_back_to_the_ERP(t *testing.T) {
	h := newHarness(t)
	dv := newReadDouble(t)
	const noteID = "e5a1c7d3-9b2f-ef11-bfe3-6045bd03d9d8"
	dv.Seed("annotations", map[string]any{
		"annotationid": noteID, "subject": "Signed contract", "filename": "contract.pdf", "mimetype": "application/pdf",
		"filesize": 412345, "documentbody": "JVBERi0x...",
		"_objectid_value": parentID, "_objectid_value" + lookupTable: "account", "_objectid_value" + formatted: "Contoso",
	})
	w := readWorker(t, h, dv, filepath.Join("..", "..", "routes.json"))
	raw, err := os.ReadFile(filepath.Join("..", "..", "samples", "note-create-trimmed.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Parse(raw, event.Hints{SizeExceeded: true, ReceivedAt: h.now})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !ev.Trimmed || ev.Attributes != nil || ev.RecordID != noteID {
		t.Fatalf("sample parsed as %+v, want a trimmed note %s without Attributes", ev, noteID)
	}
	body, _ := json.Marshal(ev)

	out := w.Process(context.Background(), queue.Delivery{MessageID: ev.EventID, CorrelationID: ev.CorrelationID, Body: body, DeliveryCount: 1})

	if out.Kind != queue.Complete || !strings.Contains(out.Summary, "note-attachment") {
		t.Fatalf("outcome = %+v, want complete through note-attachment", out)
	}
	erp := h.erp.calls()
	if len(erp) != 1 {
		t.Fatalf("ERP calls = %d, want 1", len(erp))
	}
	var sent struct {
		RecordID string `json:"RecordId"`
		Steps    struct {
			ReadNote map[string]any `json:"read-note"`
		} `json:"steps"`
	}
	if err := json.NewDecoder(bytes.NewReader(erp[0].body)).Decode(&sent); err != nil {
		t.Fatal(err)
	}
	note := sent.Steps.ReadNote
	regarding, _ := note["objectid"].(map[string]any)
	if sent.RecordID != noteID || note["filename"] != "contract.pdf" || note["filesize"] != 412345.0 || regarding["logicalName"] != "account" {
		t.Errorf("ERP body = %s, want the note's columns read back", erp[0].body)
	}
	if _, ok := note["documentbody"]; ok {
		t.Errorf("ERP body = %s, want only the selected columns", erp[0].body)
	}
}
