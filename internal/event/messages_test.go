package event_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

// dataverseFixtures holds the captured Dataverse bodies.
var dataverseFixtures = filepath.Join("testdata", "dataverse")

// Every captured body keeps the reading it had before version 1.1: the same EventName, RecordId
// and EventId (so duplicate detection still recognises a re-post across the upgrade), and the
// same ChangedFields but for the platform-set columns owninguser, owningteam, owningbusinessunit
// and an all-zero processid on Create, which 1.1 leaves out.
func TestParse_reads_every_shared_fixture_as_before(t *testing.T) {
	want := map[string]struct {
		eventName, recordID, eventID string
		changedFields                []string
	}{
		"albanianxrm-create-account-sync.json": {"AccountCreated", "53c52f26-a89d-ef11-8a69-000d3a30b0c1", "e20d639c-4f39-5c29-ac9f-2c03f66ffa7b", []string{
			"accountclassificationcode", "accountratingcode", "address2_addresstypecode", "address2_freighttermscode",
			"address2_shippingmethodcode", "businesstypecode", "creditonhold", "customersizecode", "donotbulkemail",
			"donotbulkpostalmail", "donotemail", "donotfax", "donotphone", "donotpostalmail", "donotsendmm", "exchangerate",
			"followemail", "isprivate", "marketingonly", "merged", "name", "new_name", "ownerid", "participatesinworkflow",
			"preferredcontactmethodcode", "shippingmethodcode", "statecode", "statuscode", "territorycode", "transactioncurrencyid",
		}},
		"albanianxrm-create-albxrm_alltypes-async.json": {"AlbxrmAlltypesCreated", "44bfc2a7-903e-eb11-a813-000d3ad9c2e1", "6d1f3ef3-1eb4-56ce-85cf-09d07b8e2d95", []string{
			"albxrm_currency", "albxrm_currency_base", "albxrm_customer", "albxrm_dateandtime", "albxrm_decimal", "albxrm_float",
			"albxrm_lookupaccount", "albxrm_multiplelinesoftext", "albxrm_multiselectoptionset", "albxrm_name", "albxrm_optionset",
			"albxrm_twooptions", "albxrm_wholenumber", "exchangerate", "ownerid", "statecode", "statuscode", "transactioncurrencyid",
		}},
		"albanianxrm-create-sharepointdocumentlocation-async.json": {"SharepointdocumentlocationCreated", "1e3839b3-08d4-ef11-aeb0-00155d000101", "88c28bbd-01ff-5d62-8c8c-04436f8474b3", []string{
			"locationtype", "name", "ownerid", "parentsiteorlocation", "regardingobjectid", "relativeurl", "servicetype",
			"sitecollectionid", "statecode", "statuscode",
		}},
		"albanianxrm-create-shko_allfields-sync.json": {"ShkoAllfieldsCreated", "6420f0cc-916b-ee11-9ae6-000d3a688809", "b2f925bf-e158-599b-8ee6-319bd74abe42", []string{
			"exchangerate", "ownerid", "shko_boolean", "shko_choice", "shko_choices", "shko_currency", "shko_currency_base",
			"shko_datetime", "shko_decimal", "shko_integer", "shko_lookup", "shko_name", "shko_string", "statecode", "statuscode",
			"transactioncurrencyid",
		}},
		"albanianxrm-update-new_customactivity-async.json": {"NewCustomactivityUpdated", "841579d9-7e63-ef11-9e4a-00155d0001ea", "2e171e6f-2290-5174-8b36-248a8a2013a8", []string{"statecode", "statuscode"}},
		"docs-d365-update-msdyn_agentstatus-async.json": {"MsdynAgentstatusUpdated", "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", "14504d03-30e3-58ca-8884-18190e5d999d", []string{
			"msdyn_agentid", "msdyn_availableunitscapacity", "msdyn_capacitymodifiedon", "msdyn_currentpresenceid",
			"msdyn_isagentloggedin", "msdyn_isblockedbysomeprofile", "msdyn_presencemodifiedby", "msdyn_presencemodifiedon",
		}},
		"docs-powerapps-update-contact-async.json": {"ContactUpdated", "6d81597f-0f9f-e711-8122-000d3aa2331c", "10b1fb7b-68eb-58f0-9d31-00cb2409729d", []string{"firstname", "fullname", "yomifullname"}},
	}
	files, err := filepath.Glob(filepath.Join(dataverseFixtures, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", dataverseFixtures, err)
	}
	p := newParser(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("a new fixture: pin its EventName, RecordId, EventId and ChangedFields here")
			}
			ev := parse(t, p, readFile(t, f), event.Hints{ReceivedAt: receivedAt})
			if ev.EventName != w.eventName || ev.RecordID != w.recordID || ev.EventID != w.eventID {
				t.Errorf("EventName, RecordId, EventId = %s, %s, %s; want %s, %s, %s", ev.EventName, ev.RecordID, ev.EventID, w.eventName, w.recordID, w.eventID)
			}
			if !slices.Equal(ev.ChangedFields, w.changedFields) {
				t.Errorf("ChangedFields = %q\nwant %q", ev.ChangedFields, w.changedFields)
			}
			if ev.Stage != event.StagePostOperation || ev.Mode == nil || ev.IsInTransaction == nil {
				t.Errorf("Stage, Mode, IsInTransaction = %d, %v, %v: every capture says them", ev.Stage, ev.Mode, ev.IsInTransaction)
			}
			if _, err := p.DecodeCanonical(mustMarshal(t, ev)); err != nil {
				t.Errorf("DecodeCanonical: %v", err)
			}
		})
	}
}

// compact renders raw JSON compactly, number text and member order as they are.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	return buf.String()
}

// params renders each member of a parameter map compactly.
func params(t *testing.T, m map[string]json.RawMessage) map[string]string {
	t.Helper()
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = compact(t, v)
	}
	return out
}

func TestParse_carries_every_input_of_a_custom_API_in_Parameters(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "custom-api-order-submitted.json"), event.Hints{ReceivedAt: receivedAt})
	want := map[string]string{
		"OrderNumber": `"SO-2025-0042"`, // string
		"IsRush":      `true`,           // bool
		"Quantity":    `40`,             // int
		"Discount":    `0.0750`,         // decimal, exact
		"WeightKg":    `86.25`,          // float
		"Total":       `38850.0000`,     // Money → number, exact
		"Priority":    `2`,              // OptionSetValue → integer
		"Customer":    `{"id":"a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22","logicalName":"account","name":"Contoso Ltd"}`,
		// Entity → {logicalName, id, attributes}; an all-zero id (a record to create) is left out.
		"ShipTo": `{"logicalName":"customeraddress","attributes":{"city":"Lisboa","line1":"1 Harbour Road","postalcode":"1100-148"}}`,
		// EntityCollection → an array of those; the attributes are columns, normalized as Attributes are.
		"Lines": `[{"logicalName":"salesorderdetail","id":"6a2f9d14-0c8e-ef11-a670-000d3a5c1e22",` +
			`"attributes":{"priceperunit":1050.0000,"productid":{"id":"51e0c2a9-7d3b-ef11-a670-000d3a5c1e22","logicalName":"product","name":"Laptop 14\""},"quantity":40.00000}}]`,
		"Tags":        `["laptops","renewal"]`,                  // string array
		"OrderId":     `"9e4b7c2d-5a1f-ef11-a670-000d3a5c1e22"`, // Guid
		"RequestedOn": `"2025-11-25T08:00:00Z"`,                 // DateTime → RFC 3339 UTC
	}
	got := params(t, ev.Parameters)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("Parameters[%s] = %s\nwant %s", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Parameters has %d members, want %d: %v", len(got), len(want), got)
	}
	if out := params(t, ev.OutputParameters); len(out) != 1 || out["ConfirmationNumber"] != `"C-77120"` {
		t.Errorf("OutputParameters = %v", out)
	}
	if ev.EventName != "NewOrderSubmitted" || ev.Entity != "none" || ev.Message != "new_OrderSubmitted" {
		t.Errorf("EventName, Entity, Message = %s, %s, %s", ev.EventName, ev.Entity, ev.Message)
	}
	if ev.Attributes != nil || len(ev.ChangedFields) != 0 || ev.Trimmed {
		t.Errorf("an unbound message has no record data: Attributes %v, ChangedFields %q, Trimmed %v", keys(ev.Attributes), ev.ChangedFields, ev.Trimmed)
	}
	if ev.Stage != 40 || ev.Mode == nil || *ev.Mode != event.ModeAsynchronous || ev.IsInTransaction == nil || *ev.IsInTransaction {
		t.Errorf("Stage, Mode, IsInTransaction = %d, %v, %v", ev.Stage, ev.Mode, ev.IsInTransaction)
	}
}

func TestParse_leaves_RecordId_out_for_an_unbound_message(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "custom-api-order-submitted.json"), event.Hints{ReceivedAt: receivedAt})
	if ev.RecordID != "" {
		t.Errorf("RecordId = %q, want none: PrimaryEntityId is all zeros and no Target names a record", ev.RecordID)
	}
	body := mustMarshal(t, ev)
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatal(err)
	}
	if v, ok := members["RecordId"]; ok {
		t.Errorf("the queue message carries RecordId %s", v)
	}
	if _, err := p.DecodeCanonical(body); err != nil {
		t.Errorf("the worker refuses the event: %v", err)
	}
	if ev.EventID == "" {
		t.Error("no EventId")
	}
}

func TestParse_reads_an_Associate_relationship_and_related_records(t *testing.T) {
	p := newParser(t)
	for _, message := range []string{"Associate", "Disassociate"} {
		t.Run(message, func(t *testing.T) {
			body := mutate(t, sample(t, "account-associate-contacts.json"), func(m map[string]any) { m["MessageName"] = message })
			ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
			if ev.Relationship != "new_account_contact_stakeholders" {
				t.Errorf("Relationship = %q", ev.Relationship)
			}
			want := []event.RecordRef{
				{ID: "2b8c4e61-9f3a-ef11-a670-000d3a5c1e22", LogicalName: "contact"},
				{ID: "3c9d5f72-a04b-ef11-a670-000d3a5c1e22", LogicalName: "contact"},
			}
			if !slices.Equal(ev.RelatedRecords, want) {
				t.Errorf("RelatedRecords = %+v, want %+v", ev.RelatedRecords, want)
			}
			// The step is registered for no table; the Target names the record and its table.
			if ev.RecordID != "a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22" || ev.Entity != "account" || ev.EventName != "Account"+message {
				t.Errorf("RecordId, Entity, EventName = %s, %s, %s", ev.RecordID, ev.Entity, ev.EventName)
			}
			got := params(t, ev.Parameters)
			if got["Relationship"] != `{"schemaName":"new_account_contact_stakeholders","primaryEntityRole":null}` {
				t.Errorf("Parameters.Relationship = %s", got["Relationship"])
			}
			if !strings.HasPrefix(got["RelatedEntities"], `[{"id":"2b8c4e61-9f3a-ef11-a670-000d3a5c1e22","logicalName":"contact","name":null}`) {
				t.Errorf("Parameters.RelatedEntities = %s", got["RelatedEntities"])
			}
			if _, ok := got["Target"]; ok || len(got) != 2 {
				t.Errorf("Parameters = %v, want Relationship and RelatedEntities only (Target is the record)", got)
			}
			if _, err := p.DecodeCanonical(mustMarshal(t, ev)); err != nil {
				t.Errorf("DecodeCanonical: %v", err)
			}
		})
	}
}

func TestParse_takes_a_SetState_record_from_its_EntityMoniker(t *testing.T) {
	p := newParser(t)
	body := sample(t, "account-setstate.json")
	ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
	if ev.EventName != "AccountSetState" || ev.RecordID != "a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22" {
		t.Errorf("EventName, RecordId = %s, %s", ev.EventName, ev.RecordID)
	}
	got := params(t, ev.Parameters)
	if got["State"] != "1" || got["Status"] != "2" ||
		got["EntityMoniker"] != `{"id":"a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22","logicalName":"account","name":null}` {
		t.Errorf("Parameters = %v", got)
	}
	if attr(t, ev, "statecode") != "1" || attr(t, ev, "name") != `"Contoso Ltd"` {
		t.Errorf("Attributes from the post image = %v", keys(ev.Attributes))
	}
	// The EntityMoniker outranks PrimaryEntityId; without it, PrimaryEntityId names the record.
	other := "0d2e4f60-1a3b-ef11-a670-000d3a5c1e22"
	ev = parse(t, p, mutate(t, body, func(m map[string]any) { m["PrimaryEntityId"] = other }), event.Hints{ReceivedAt: receivedAt})
	if ev.RecordID != "a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22" {
		t.Errorf("RecordId = %s, want the EntityMoniker's", ev.RecordID)
	}
	ev = parse(t, p, mutate(t, body, func(m map[string]any) {
		m["PrimaryEntityId"] = other
		m["InputParameters"] = m["InputParameters"].([]any)[1:]
	}), event.Hints{ReceivedAt: receivedAt})
	if ev.RecordID != other {
		t.Errorf("RecordId = %s, want PrimaryEntityId %s", ev.RecordID, other)
	}
}

// withInputs is the SetState sample turned into message on opportunity, with the given
// InputParameters items.
func withInputs(t *testing.T, message, inputs string) []byte {
	t.Helper()
	return mutate(t, sample(t, "account-setstate.json"), func(m map[string]any) {
		m["MessageName"] = message
		m["PrimaryEntityName"] = "opportunity"
		m["PostEntityImages"] = []any{}
		m["InputParameters"] = json.RawMessage("[" + inputs + "]")
	})
}

const (
	opportunityRef = `{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","KeyAttributes":[],"LogicalName":"opportunity","Name":null,"RowVersion":null}`
	userRef        = `{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","KeyAttributes":[],"LogicalName":"systemuser","Name":null,"RowVersion":null}`
	optionSet      = `{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":%s}`
)

func option(v string) string { return strings.Replace(optionSet, "%s", v, 1) }

func TestParse_keeps_the_inputs_of_other_messages_in_Parameters(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		message, inputs string
		want            map[string]string
	}{
		{"Assign", `{"key":"Target","value":` + opportunityRef + `},{"key":"Assignee","value":` + userRef + `}`, map[string]string{
			"Assignee": `{"id":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","logicalName":"systemuser","name":null}`,
		}},
		{"Merge", `{"key":"Target","value":` + opportunityRef + `},{"key":"SubordinateId","value":"0d2e4f60-1a3b-ef11-a670-000d3a5c1e22"},` +
			`{"key":"UpdateContent","value":{"__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts","Attributes":[{"key":"name","value":"Merged"}],"Id":"00000000-0000-0000-0000-000000000000","LogicalName":"opportunity"}},` +
			`{"key":"PerformParentingChecks","value":false}`, map[string]string{
			"SubordinateId":          `"0d2e4f60-1a3b-ef11-a670-000d3a5c1e22"`,
			"UpdateContent":          `{"logicalName":"opportunity","attributes":{"name":"Merged"}}`,
			"PerformParentingChecks": `false`,
		}},
		{"Win", `{"key":"OpportunityClose","value":{"__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts","Attributes":[{"key":"opportunityid","value":` + opportunityRef + `},{"key":"actualrevenue","value":{"__type":"Money:http://schemas.microsoft.com/xrm/2011/Contracts","Value":12500.0000}}],"LogicalName":"opportunityclose"}},` +
			`{"key":"Status","value":` + option("3") + `}`, map[string]string{
			"OpportunityClose": `{"logicalName":"opportunityclose","attributes":{"actualrevenue":12500.0000,"opportunityid":{"id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","logicalName":"opportunity","name":null}}}`,
			"Status":           `3`,
		}},
		{"QualifyLead", `{"key":"LeadId","value":` + strings.Replace(opportunityRef, `"opportunity"`, `"lead"`, 1) + `},{"key":"CreateAccount","value":true},{"key":"CreateContact","value":false},{"key":"CreateOpportunity","value":true},{"key":"Status","value":` + option("3") + `}`, map[string]string{
			"LeadId":            `{"id":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","logicalName":"lead","name":null}`,
			"CreateAccount":     `true`,
			"CreateContact":     `false`,
			"CreateOpportunity": `true`,
			"Status":            `3`,
		}},
		{"new_Escalate", `{"key":"Target","value":` + opportunityRef + `},{"key":"Reason","value":"customer waiting"},{"key":"Level","value":2}`, map[string]string{
			"Reason": `"customer waiting"`,
			"Level":  `2`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.message, func(t *testing.T) {
			ev := parse(t, p, withInputs(t, tt.message, tt.inputs), event.Hints{ReceivedAt: receivedAt})
			got := params(t, ev.Parameters)
			if len(got) != len(tt.want) {
				t.Errorf("Parameters = %v, want %d members", got, len(tt.want))
			}
			for name, w := range tt.want {
				if got[name] != w {
					t.Errorf("Parameters[%s] = %s\nwant %s", name, got[name], w)
				}
			}
			if want := event.EventNameFor("opportunity", tt.message); ev.EventName != want {
				t.Errorf("EventName = %s, want %s", ev.EventName, want)
			}
			if _, err := p.DecodeCanonical(mustMarshal(t, ev)); err != nil {
				t.Errorf("DecodeCanonical: %v", err)
			}
		})
	}
}

func TestParse_carries_stage_mode_and_transaction(t *testing.T) {
	p := newParser(t)
	body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) {
		m["Stage"] = 20
		m["Mode"] = 0
		m["IsInTransaction"] = true
	})
	ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
	if ev.Stage != event.StagePreOperation || ev.Mode == nil || *ev.Mode != event.ModeSynchronous || ev.IsInTransaction == nil || !*ev.IsInTransaction {
		t.Fatalf("Stage, Mode, IsInTransaction = %d, %v, %v", ev.Stage, ev.Mode, ev.IsInTransaction)
	}
	out := mustMarshal(t, ev)
	for _, member := range []string{`"Stage":20`, `"Mode":0`, `"IsInTransaction":true`} {
		if !strings.Contains(string(out), member) {
			t.Errorf("the queue message lacks %s: %s", member, out)
		}
	}
	back, err := p.DecodeCanonical(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.Stage != 20 || *back.Mode != 0 || !*back.IsInTransaction {
		t.Errorf("decoded Stage, Mode, IsInTransaction = %d, %d, %v", back.Stage, *back.Mode, *back.IsInTransaction)
	}
}

func TestParse_points_at_a_stage_or_mode_Dataverse_never_sends(t *testing.T) {
	p := newParser(t)
	for name, tt := range map[string]struct {
		member string
		value  any
	}{
		"stage 30, the main operation": {"Stage", 30},
		"stage as text":                {"Stage", "40"},
		"mode 2":                       {"Mode", 2},
		"transaction as text":          {"IsInTransaction", "yes"},
	} {
		t.Run(name, func(t *testing.T) {
			body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) { m[tt.member] = tt.value })
			_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
			if got := pointers(t, err); !slices.Equal(got, []string{"/" + tt.member}) {
				t.Errorf("pointers = %q (%v)", got, err)
			}
		})
	}
}

func TestParse_reads_an_ISO_8601_OperationCreatedOn(t *testing.T) {
	p := newParser(t)
	wcf := parse(t, p, sample(t, "opportunity-update.json"), event.Hints{ReceivedAt: receivedAt})
	for date, want := range map[string]string{
		"2025-11-25T07:04:05Z":         "2025-11-25T07:04:05Z",
		"2025-11-25T07:04:05.1234567Z": "2025-11-25T07:04:05.1234567Z", // .NET's round-trip form
		"2025-11-25T09:04:05+02:00":    "2025-11-25T07:04:05Z",
		"2025-11-25T09:04:05.5+0200":   "2025-11-25T07:04:05.5Z",
		"2025-11-25T07:04:05":          "2025-11-25T07:04:05Z", // no zone: UTC, as Dataverse keeps time
		"2025-11-25 07:04:05Z":         "2025-11-25T07:04:05Z",
		"2025-11-25T07:04":             "2025-11-25T07:04:00Z",
		// Forms that name no instant an event can carry: the receive time, never a 400.
		"2025-02-30T00:00:00Z":      "2026-01-02T03:04:05Z",
		"2025-11-25T07:04:05+24:00": "2026-01-02T03:04:05Z",
		"9999-12-31T23:59:59-01:00": "2026-01-02T03:04:05Z",
		"2025-11-25T99:04:05Z":      "2026-01-02T03:04:05Z",
		"2025-11-25T07:04:05+":      "2026-01-02T03:04:05Z",
	} {
		t.Run(date, func(t *testing.T) {
			body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) { m["OperationCreatedOn"] = date })
			ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
			if ev.Timestamp != want {
				t.Errorf("Timestamp = %s, want %s", ev.Timestamp, want)
			}
			if ev.EventID != wcf.EventID {
				t.Errorf("EventId %s changed with the date's form (was %s)", ev.EventID, wcf.EventID)
			}
			if _, err := p.DecodeCanonical(mustMarshal(t, ev)); err != nil {
				t.Errorf("DecodeCanonical: %v", err)
			}
		})
	}
}

func TestParse_leaves_platform_set_columns_out_of_ChangedFields(t *testing.T) {
	p := newParser(t)
	ref := func(table string) string {
		return strings.Replace(userRef, `"systemuser"`, `"`+table+`"`, 1)
	}
	platformSet := []string{
		`{"key":"owninguser","value":` + ref("systemuser") + `}`,
		`{"key":"owningteam","value":` + ref("team") + `}`,
		`{"key":"owningbusinessunit","value":` + ref("businessunit") + `}`,
	}
	zeroProcess := `{"key":"processid","value":"00000000-0000-0000-0000-000000000000"}`
	tests := []struct {
		message string
		items   []string
		changed []string
	}{
		{"Create", append(slices.Clone(platformSet), `{"key":"name","value":"x"}`, zeroProcess), []string{"name"}},
		{"Create", []string{`{"key":"processid","value":"919e14d1-6489-4852-abd0-a63a6ecaac5d"}`}, []string{"processid"}},
		{"Update", append(slices.Clone(platformSet), zeroProcess), []string{"processid"}},
	}
	for _, tt := range tests {
		body := mutate(t, updateWith(tt.items...), func(m map[string]any) { m["MessageName"] = tt.message })
		ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
		if !slices.Equal(ev.ChangedFields, tt.changed) {
			t.Errorf("%s %d columns: ChangedFields = %q, want %q", tt.message, len(tt.items), ev.ChangedFields, tt.changed)
		}
		if len(ev.Attributes) != len(tt.items) {
			t.Errorf("%s: Attributes %v, want every column kept", tt.message, keys(ev.Attributes))
		}
	}
}

func TestParse_keeps_a_trimmed_event_trimmed_without_Parameters(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "custom-api-order-submitted.json"), event.Hints{SizeExceeded: true, ReceivedAt: receivedAt})
	if !ev.Trimmed || ev.Parameters != nil || ev.Attributes != nil {
		t.Errorf("Trimmed, Parameters, Attributes = %v, %v, %v", ev.Trimmed, ev.Parameters, ev.Attributes)
	}
	ev = parse(t, p, sample(t, "size-exceeded.json"), event.Hints{SizeExceeded: true, ReceivedAt: receivedAt})
	if !ev.Trimmed || ev.Parameters != nil || ev.Stage != 40 {
		t.Errorf("Trimmed, Parameters, Stage = %v, %v, %d", ev.Trimmed, ev.Parameters, ev.Stage)
	}
}

func TestParse_points_at_each_bad_parameter(t *testing.T) {
	p := newParser(t)
	moniker := strings.Replace(userRef, `"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22"`, `"me"`, 1)
	tests := []struct {
		name, inputs, outputs, want, detail string
	}{
		{"EntityMoniker with an id that is not a GUID", `{"key":"EntityMoniker","value":` + moniker + `}`, `[]`, "/InputParameters/0/value/Id", "GUID"},
		{"Relationship without a schema name", `{"key":"Relationship","value":{"__type":"Relationship:x","PrimaryEntityRole":null}}`, `[]`, "/InputParameters/0/value/SchemaName", "required"},
		{"Relationship with a schema name that is not one", `{"key":"Relationship","value":{"__type":"Relationship:x","SchemaName":"new account"}}`, `[]`, "/InputParameters/0/value/SchemaName", "schema name"},
		{"Money without a number", `{"key":"Total","value":{"__type":"Money:x","Value":"12"}}`, `[]`, "/InputParameters/0/value/Value", "number"},
		{"option set with a fraction", `{"key":"Priority","value":{"__type":"OptionSetValue:x","Value":2.5}}`, `[]`, "/InputParameters/0/value/Value", "integer"},
		{"a related record without an id", `{"key":"RelatedEntities","value":[{"__type":"EntityReference:x","LogicalName":"contact"}]}`, `[]`, "/InputParameters/0/value/0/Id", "required"},
		{"an entity parameter without a table", `{"key":"ShipTo","value":{"__type":"Entity:x","Attributes":[]}}`, `[]`, "/InputParameters/0/value/LogicalName", "required"},
		{"a date out of range", `{"key":"RequestedOn","value":"/Date(999999999999999999)/"}`, `[]`, "/InputParameters/0/value", "years"},
		{"an output parameter that is not an entry", `{"key":"X","value":1}`, `[5]`, "/OutputParameters/0", "object"},
		{"an output lookup without a table", `{"key":"X","value":1}`, `[{"key":"Account","value":{"__type":"EntityReference:x","Id":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22"}}]`, "/OutputParameters/0/value/LogicalName", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := mutate(t, withInputs(t, "new_Escalate", tt.inputs), func(m map[string]any) {
				m["OutputParameters"] = json.RawMessage(tt.outputs)
			})
			_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
			if got := pointers(t, err); !slices.Equal(got, []string{tt.want}) {
				t.Fatalf("pointers = %q, want %s (%v)", got, tt.want, err)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not say %q", err, tt.detail)
			}
		})
	}
}

func TestDecodeCanonical_accepts_versions_1_0_and_1_1(t *testing.T) {
	p := newParser(t)
	v11 := mustMarshal(t, parse(t, p, sample(t, "account-associate-contacts.json"), event.Hints{ReceivedAt: receivedAt}))
	unbound := mustMarshal(t, parse(t, p, sample(t, "custom-api-order-submitted.json"), event.Hints{ReceivedAt: receivedAt}))
	v10 := mutate(t, mustMarshal(t, parse(t, p, sample(t, "opportunity-update.json"), event.Hints{ReceivedAt: receivedAt})), func(m map[string]any) {
		m["SchemaVersion"] = "1.0"
		for _, added := range []string{"Parameters", "OutputParameters", "Stage", "Mode", "IsInTransaction"} {
			delete(m, added)
		}
	})
	for name, body := range map[string][]byte{"1.1": v11, "1.1 without RecordId": unbound, "1.0": v10} {
		if _, err := p.DecodeCanonical(body); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	tests := []struct {
		name   string
		body   []byte
		change func(m map[string]any)
		want   []string
	}{
		{"1.0 without RecordId", v10, func(m map[string]any) { delete(m, "RecordId") }, []string{"/RecordId"}},
		{"stage 30", v11, func(m map[string]any) { m["Stage"] = 30 }, []string{"/Stage"}},
		{"mode 2", v11, func(m map[string]any) { m["Mode"] = 2 }, []string{"/Mode"}},
		{"transaction as text", v11, func(m map[string]any) { m["IsInTransaction"] = "false" }, []string{"/IsInTransaction"}},
		{"relationship that is not a schema name", v11, func(m map[string]any) { m["Relationship"] = "a b" }, []string{"/Relationship"}},
		{"related record without an id", v11, func(m map[string]any) { m["RelatedRecords"] = []any{map[string]any{"logicalName": "contact"}} }, []string{"/RelatedRecords/0/id"}},
		{"parameters as a list", unbound, func(m map[string]any) { m["Parameters"] = []any{} }, []string{"/Parameters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.DecodeCanonical(mutate(t, tt.body, tt.change))
			if got := pointers(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("pointers = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}
