package event_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/event"
)

const (
	createOpp     = "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8"
	createUser    = "7a41d1a4-3c6b-ef11-a670-000d3a5c1e22"
	createAccount = "5e2d6c1a-0b9f-4e8d-a7c6-b5a4f3e2d1c0"
	createUnit    = "0669e963-e69c-ef11-8a6b-000d3a318589"
	createJob     = "9d0c0000-0000-4000-8000-0000000000c1"
)

// createContext is an opportunity Create as a webhook step posts it, at 2026-11-02T10:00:00Z: the
// columns the user set, the platform's stamps and owner columns, the primary key.
func createContext() []byte {
	ref := func(id, table, name string) string {
		return `{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"` + strings.ToUpper(id) +
			`","LogicalName":"` + table + `","Name":"` + name + `"}`
	}
	attrs := []string{
		`{"key":"opportunityid","value":"` + createOpp + `"}`,
		`{"key":"name","value":"Fabrikam <renewal> & more"}`,
		`{"key":"estimatedvalue","value":{"__type":"Money:http://schemas.microsoft.com/xrm/2011/Contracts","Value":12500.5}}`,
		`{"key":"statuscode","value":{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":1}}`,
		`{"key":"isrevenuesystemcalculated","value":false}`,
		`{"key":"estimatedclosedate","value":"/Date(1798761600000)/"}`,
		`{"key":"parentaccountid","value":` + ref(createAccount, "account", "Contoso") + `}`,
		`{"key":"ownerid","value":` + ref(createUser, "systemuser", "Ana Diaz") + `}`,
		`{"key":"owninguser","value":` + ref(createUser, "systemuser", "Ana Diaz") + `}`,
		`{"key":"owningbusinessunit","value":` + ref(createUnit, "businessunit", "Sales") + `}`,
		`{"key":"createdby","value":` + ref(createUser, "systemuser", "Ana Diaz") + `}`,
		`{"key":"modifiedby","value":` + ref(createUser, "systemuser", "Ana Diaz") + `}`,
		`{"key":"createdon","value":"/Date(1793613600000)/"}`,
		`{"key":"modifiedon","value":"/Date(1793613600000)/"}`,
	}
	return []byte(`{"CorrelationId":"2f8b4c1e-93d7-4a5b-8e61-0c4f7a9d3b12","MessageName":"Create",` +
		`"OrganizationId":"1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b1","PrimaryEntityId":"` + createOpp + `",` +
		`"PrimaryEntityName":"opportunity","UserId":"` + createUser + `","OperationCreatedOn":"/Date(1793613600000)/",` +
		`"OperationId":"f8a13ba5-d91d-4dd5-936c-7f3b6d6adb95","OwningExtension":{"Id":"5f0e1d2c-0000-4000-8000-00000000a001"},` +
		`"InputParameters":[{"key":"Target","value":{"Attributes":[` + strings.Join(attrs, ",") +
		`],"Id":"` + createOpp + `","LogicalName":"opportunity"}}]}`)
}

// createRecord is the same opportunity as the Web API returns it when read with
// event.RecordAnnotations: lookups as _<lookup>_value with their table and primary name, nulls for
// the columns nobody set, formatted values of other columns, the etag.
func createRecord(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	lookup := func(rec map[string]any, name, id, table, display string) {
		rec["_"+name+"_value"] = id
		rec["_"+name+"_value@"+event.AnnotationLookupTable] = table
		rec["_"+name+"_value@"+event.AnnotationFormattedValue] = display
	}
	rec := map[string]any{
		"@odata.etag":    `W/"1234"`,
		"opportunityid":  createOpp,
		"name":           "Fabrikam <renewal> & more",
		"estimatedvalue": json.Number("12500.5"),
		"estimatedvalue@" + event.AnnotationFormattedValue: "$12,500.50",
		"statuscode": json.Number("1"),
		"statuscode@" + event.AnnotationFormattedValue: "In Progress",
		"isrevenuesystemcalculated":                    false,
		"estimatedclosedate":                           "2027-01-01T00:00:00Z",
		"createdon":                                    "2026-11-02T10:00:00Z",
		"modifiedon":                                   "2026-11-02T10:00:00Z",
		"description":                                  nil,
		"_campaignid_value":                            nil,
		"_owningteam_value":                            nil,
	}
	lookup(rec, "parentaccountid", createAccount, "account", "Contoso")
	for _, name := range []string{"ownerid", "owninguser", "createdby", "modifiedby"} {
		lookup(rec, name, createUser, "systemuser", "Ana Diaz")
	}
	lookup(rec, "owningbusinessunit", createUnit, "businessunit", "Sales")
	out := map[string]json.RawMessage{}
	for k, v := range rec {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

// What a re-read cannot give back is what the post alone carried: a Target's lookup written
// without its Name (the re-read has the primary name), a Target's explicit nulls (a re-read
// leaves out every empty column), multi-select choices (the Web API writes "1,2") and a number's
// text where the two sources write it differently. The Create here carries none of them.
func TestFromReread_gives_a_recovered_Create_the_event_the_intake_gives_the_posted_Create(t *testing.T) {
	p := newParser(t)
	posted := parse(t, p, createContext(), event.Hints{ReceivedAt: receivedAt})
	recovered, err := event.FromReread(event.Reread{
		JobID: strings.ToUpper(createJob), CorrelationID: posted.CorrelationID,
		Entity: "opportunity", Message: "Create", RecordID: strings.ToUpper(createOpp), TriggeredBy: createUser,
		At: time.Date(2026, 11, 2, 11, 0, 0, 0, time.FixedZone("CET", 3600)), Record: createRecord(t),
	})
	if err != nil {
		t.Fatalf("FromReread: %v", err)
	}

	if !reflect.DeepEqual(attributeText(recovered), attributeText(posted)) {
		t.Errorf("Attributes differ\nrecovered %v\nposted    %v", attributeText(recovered), attributeText(posted))
	}
	want := []string{"estimatedclosedate", "estimatedvalue", "isrevenuesystemcalculated", "name", "ownerid", "parentaccountid", "statuscode"}
	if !slices.Equal(recovered.ChangedFields, want) || !slices.Equal(posted.ChangedFields, want) {
		t.Errorf("ChangedFields: recovered %v, posted %v; want %v (no stamps, no owner columns, no key)", recovered.ChangedFields, posted.ChangedFields, want)
	}
	if recovered.Timestamp != "2026-11-02T10:00:00Z" || recovered.Timestamp != posted.Timestamp {
		t.Errorf("Timestamp: recovered %s, posted %s; want both 2026-11-02T10:00:00Z", recovered.Timestamp, posted.Timestamp)
	}
	if recovered.EventName != posted.EventName || recovered.Entity != posted.Entity || recovered.Message != posted.Message ||
		recovered.RecordID != posted.RecordID || recovered.TriggeredBy != posted.TriggeredBy || recovered.CorrelationID != posted.CorrelationID {
		t.Errorf("envelope differs\nrecovered %+v\nposted    %+v", recovered, posted)
	}
	if recovered.Source != event.SourceRecover || posted.Source != event.SourceWebhook {
		t.Errorf("Source: recovered %s, posted %s", recovered.Source, posted.Source)
	}
	// EventIds follow each source's documented rule: the recovered one is named by the failed job,
	// the same however the job's id is written; the two never collide.
	if recovered.EventID != event.RereadEventID(createJob) || recovered.EventID == posted.EventID {
		t.Errorf("EventId: recovered %s, posted %s; want RereadEventID(job)", recovered.EventID, posted.EventID)
	}
	// Both are events the worker accepts.
	for _, ev := range []event.Event{posted, recovered} {
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DecodeCanonical(body); err != nil {
			t.Errorf("the worker refuses the %s event: %v", ev.Source, err)
		}
	}
}

func attributeText(ev event.Event) map[string]string {
	out := map[string]string{}
	for k, v := range ev.Attributes {
		out[k] = string(v)
	}
	return out
}

func TestRereadEventID_is_a_name_based_UUID_of_the_job_however_its_id_is_written(t *testing.T) {
	a, b := event.RereadEventID(createJob), event.RereadEventID(strings.ToUpper(createJob))
	want := uuid.NewSHA1(uuid.MustParse(event.EventIDNamespace), []byte("recover\n"+createJob)).String()
	if a != want || b != want || event.RereadEventID(createOpp) == want {
		t.Errorf("RereadEventID = %s, %s; want %s, and another job another id", a, b, want)
	}
}

func TestFromReread_names_the_filtering_attributes_of_an_Update_and_nothing_for_a_Delete(t *testing.T) {
	upd, err := event.FromReread(event.Reread{JobID: createJob, Entity: "opportunity", Message: "Update", RecordID: createOpp,
		FilteringAttributes: []string{"statuscode", "estimatedvalue", "statuscode"}, Record: createRecord(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(upd.ChangedFields, []string{"estimatedvalue", "statuscode"}) || upd.CorrelationID != upd.EventID {
		t.Errorf("update: ChangedFields %v, CorrelationId %s", upd.ChangedFields, upd.CorrelationID)
	}
	del, err := event.FromReread(event.Reread{JobID: createJob, Entity: "opportunity", Message: "Delete", RecordID: createOpp})
	if err != nil {
		t.Fatal(err)
	}
	if del.Attributes != nil || del.ChangedFields == nil || len(del.ChangedFields) != 0 || del.EventName != "OpportunityDeleted" {
		t.Errorf("delete = %+v, want the id alone", del)
	}
}

func TestRecordValues_keeps_nulls_and_reads_lookups_with_or_without_annotations(t *testing.T) {
	rec := map[string]json.RawMessage{
		"@odata.context":          []byte(`"x"`),
		"accountid":               []byte(`"` + createAccount + `"`),
		"creditlimit":             []byte(`50000.0000`),
		"description":             []byte(`null`),
		"_primarycontactid_value": []byte(`"5E2D6C1A-0B9F-4E8D-A7C6-B5A4F3E2D1C0"`),
		"_parentaccountid_value":  []byte(`null`),
		"_ownerid_value":          []byte(`"` + createUser + `"`),
		"_ownerid_value@" + event.AnnotationLookupTable: []byte(`"systemuser"`),
		"Not-A-Column": []byte(`1`),
	}
	got, err := event.RecordValues(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"accountid":        createAccount,
		"creditlimit":      json.Number("50000.0000"),
		"description":      nil,
		"primarycontactid": map[string]any{"id": "5e2d6c1a-0b9f-4e8d-a7c6-b5a4f3e2d1c0", "name": nil},
		"parentaccountid":  nil,
		"ownerid":          map[string]any{"id": createUser, "logicalName": "systemuser", "name": nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RecordValues =\n%#v\nwant\n%#v", got, want)
	}
	if _, err := event.RecordValues(map[string]json.RawMessage{"_ownerid_value": []byte(`5`)}); err == nil {
		t.Error("a lookup whose value is not an id was accepted")
	}
}
