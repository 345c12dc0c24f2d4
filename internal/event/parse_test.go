package event_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

func TestParse_accepts_every_captured_fixture_and_sample(t *testing.T) {
	p := newParser(t)
	files, err := filepath.Glob(filepath.Join("testdata", "dataverse", "*.json"))
	if err != nil || len(files) < 7 {
		t.Fatalf("fixtures: %v (found %d)", err, len(files))
	}
	samples, _ := filepath.Glob(filepath.Join("..", "..", "samples", "*.json"))
	if len(samples) < 4 {
		t.Fatalf("found %d samples, want 4", len(samples))
	}
	for _, f := range append(files, samples...) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ev := parse(t, p, readFile(t, f), event.Hints{ReceivedAt: receivedAt})
			// An unbound message (Entity "none": the custom API sample) names no record.
			if ev.EventID == "" || ev.EventName == "" || (ev.RecordID == "" && ev.Entity != "none") || ev.Timestamp == "" {
				t.Errorf("incomplete event: %+v", ev)
			}
			if ev.ChangedFields == nil {
				t.Error("ChangedFields is nil; it must encode as [] for the canonical schema")
			}
			body, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.DecodeCanonical(body); err != nil {
				t.Errorf("the parsed event does not pass DecodeCanonical: %v", err)
			}
		})
	}
}

func TestParse_normalizes_fixtures_as_read_by_hand(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		file          string
		eventName     string
		entity        string
		message       string
		recordID      string
		changedFields []string
		triggeredBy   string
		timestamp     string
		organization  string
		correlation   string
		depth         int
	}{
		{
			file:      "docs-powerapps-update-contact-async.json",
			eventName: "ContactUpdated", entity: "contact", message: "Update",
			recordID: "6d81597f-0f9f-e711-8122-000d3aa2331c",
			// contactid is the key; modifiedon/modifiedby/modifiedonbehalfby are stamps.
			changedFields: []string{"firstname", "fullname", "yomifullname"},
			triggeredBy:   "75c2dd85-e89e-e711-8122-000d3aa2331c",
			// /Date(1506409448000-0700)/: the suffix does not shift the instant.
			timestamp:    "2017-09-26T07:04:08Z",
			organization: "4ef5b371-e89e-e711-8122-000d3aa2331c",
			correlation:  "b374239d-4233-41a9-8b17-a86cb4f737b5",
			depth:        1,
		},
		{
			file:      "docs-d365-update-msdyn_agentstatus-async.json",
			eventName: "MsdynAgentstatusUpdated", entity: "msdyn_agentstatus", message: "Update",
			recordID: "3d1feef9-604d-ef11-bfe3-6045bd03d9d8",
			changedFields: []string{
				"msdyn_agentid", "msdyn_availableunitscapacity", "msdyn_capacitymodifiedon",
				"msdyn_currentpresenceid", "msdyn_isagentloggedin", "msdyn_isblockedbysomeprofile",
				"msdyn_presencemodifiedby", "msdyn_presencemodifiedon",
			},
			triggeredBy:  "d89254ff-9438-ef11-a315-000d3a5a54dc",
			timestamp:    "2024-08-02T07:00:39Z",
			organization: "6042beb1-a93a-ef11-8e4b-00224802c699",
			correlation:  "e1bcd028-ae87-4ca6-af27-a17ee680dbc9",
			depth:        1,
		},
		{
			file:      "albanianxrm-update-new_customactivity-async.json",
			eventName: "NewCustomactivityUpdated", entity: "new_customactivity", message: "Update",
			recordID: "841579d9-7e63-ef11-9e4a-00155d0001ea",
			// activityid is the key column of an activity table.
			changedFields: []string{"statecode", "statuscode"},
			triggeredBy:   "400075a6-19a2-49aa-8fa0-330ba2810540",
			timestamp:     "2024-08-26T04:43:16Z",
			organization:  "e4032af2-cacf-4dd0-92aa-9036176934a5",
			correlation:   "3860c444-0576-4d79-9877-b0ca8e4e9bd4",
			depth:         1,
		},
		{
			file:      "albanianxrm-create-albxrm_alltypes-async.json",
			eventName: "AlbxrmAlltypesCreated", entity: "albxrm_alltypes", message: "Create",
			recordID: "44bfc2a7-903e-eb11-a813-000d3ad9c2e1",
			// owningbusinessunit is in the Target too, but the platform sets it from the owner.
			changedFields: []string{
				"albxrm_currency", "albxrm_currency_base", "albxrm_customer", "albxrm_dateandtime",
				"albxrm_decimal", "albxrm_float", "albxrm_lookupaccount", "albxrm_multiplelinesoftext",
				"albxrm_multiselectoptionset", "albxrm_name", "albxrm_optionset", "albxrm_twooptions",
				"albxrm_wholenumber", "exchangerate", "ownerid", "statecode",
				"statuscode", "transactioncurrencyid",
			},
			triggeredBy:  "a0bde583-0537-eb11-bf68-0022489b563d",
			timestamp:    "2020-12-15T04:47:38Z",
			organization: "0ba4ce62-d2d6-4681-bc25-b3bfb695d4d6",
			correlation:  "9d4c7524-a578-4783-b608-73f7b0b68fd2",
			depth:        1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev := parse(t, p, fixture(t, tt.file), event.Hints{ReceivedAt: receivedAt})
			if ev.EventName != tt.eventName || ev.Entity != tt.entity || ev.Message != tt.message {
				t.Errorf("name = %s (%s, %s), want %s (%s, %s)", ev.EventName, ev.Entity, ev.Message, tt.eventName, tt.entity, tt.message)
			}
			if ev.RecordID != tt.recordID {
				t.Errorf("RecordId = %s, want %s", ev.RecordID, tt.recordID)
			}
			if !slices.Equal(ev.ChangedFields, tt.changedFields) {
				t.Errorf("ChangedFields = %q\nwant %q", ev.ChangedFields, tt.changedFields)
			}
			if ev.TriggeredBy != tt.triggeredBy || ev.Timestamp != tt.timestamp {
				t.Errorf("TriggeredBy, Timestamp = %s, %s; want %s, %s", ev.TriggeredBy, ev.Timestamp, tt.triggeredBy, tt.timestamp)
			}
			if ev.OrganizationID != tt.organization || ev.CorrelationID != tt.correlation || ev.Depth != tt.depth {
				t.Errorf("OrganizationId, CorrelationId, Depth = %s, %s, %d", ev.OrganizationID, ev.CorrelationID, ev.Depth)
			}
			if ev.Source != event.SourceWebhook || ev.SchemaVersion != event.SchemaVersion || ev.Trimmed {
				t.Errorf("Source, SchemaVersion, Trimmed = %s, %s, %v", ev.Source, ev.SchemaVersion, ev.Trimmed)
			}
		})
	}
}

func TestParse_overlays_the_target_on_the_post_image(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "opportunity-update.json"), event.Hints{ReceivedAt: receivedAt})
	if ev.EventName != "OpportunityUpdated" || !slices.Equal(ev.ChangedFields, []string{"estimatedvalue", "name"}) {
		t.Fatalf("EventName, ChangedFields = %s, %q", ev.EventName, ev.ChangedFields)
	}
	want := map[string]string{
		"estimatedvalue":  `12500.0000`, // Money: the decimal text survives, no float64 round trip
		"name":            `"Contoso - 40 laptops (renewal)"`,
		"parentaccountid": `{"id":"a7d3e1f0-6b2c-ef11-a670-000d3a5c1e22","logicalName":"account","name":"Contoso Ltd"}`, // from the PostImage only
		"salesstage":      `2`,
		"modifiedon":      `"2025-11-25T07:04:05Z"`,
		"modifiedby":      `{"id":"7a41d1a4-3c6b-ef11-a670-000d3a5c1e22","logicalName":"systemuser","name":null}`,
	}
	for name, w := range want {
		if got := attr(t, ev, name); got != w {
			t.Errorf("Attributes[%s] = %s, want %s", name, got, w)
		}
	}
}

func TestParse_normalizes_each_typed_value(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		name  string
		value string // the attribute value as Dataverse writes it
		want  string // the canonical plain JSON
	}{
		{"money keeps its exact text", `{"__type":"Money:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":12500.0000}`, `12500.0000`},
		{"money with unescaped type", `{"__type":"Money:http://schemas.microsoft.com/xrm/2011/Contracts","Value":2154.32}`, `2154.32`},
		{"option set", `{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":257760001}`, `257760001`},
		{"multi-select", `[{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":1},{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":2}]`, `[1,2]`},
		{"empty multi-select", `[]`, `[]`},
		{"lookup lower-cases the id", `{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"B76B3F4B-1BE7-E611-8101-E0071B6AF231","KeyAttributes":[],"LogicalName":"account","Name":"Fabrikam","RowVersion":null}`, `{"id":"b76b3f4b-1be7-e611-8101-e0071b6af231","logicalName":"account","name":"Fabrikam"}`},
		{"entity collection", `{"__type":"EntityCollection:http://schemas.microsoft.com/xrm/2011/Contracts","Entities":[{"Attributes":[{"key":"partyid","value":{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"64b14206-8fbb-e611-80ef-005056bd19ee","LogicalName":"queue","Name":"Queue Name"}},{"key":"participationtypemask","value":{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":2}},{"key":"scheduledend","value":"\/Date(1724701394000)\/"}],"EntityState":null,"FormattedValues":[],"Id":"871579d9-7e63-ef11-9e4a-00155d0001ea","KeyAttributes":[],"LogicalName":"activityparty","RelatedEntities":[],"RowVersion":"147059705"}],"EntityName":"activityparty","MinActiveRowVersion":"-1","MoreRecords":false,"PagingCookie":null,"TotalRecordCount":-1,"TotalRecordCountLimitExceeded":false}`,
			`[{"participationtypemask":2,"partyid":{"id":"64b14206-8fbb-e611-80ef-005056bd19ee","logicalName":"queue","name":"Queue Name"},"scheduledend":"2024-08-26T19:43:14Z"}]`},
		{"date without offset", `"\/Date(1506384247000)\/"`, `"2017-09-26T00:04:07Z"`},
		{"date with milliseconds", `"/Date(1721816905786)/"`, `"2024-07-24T10:28:25.786Z"`},
		{"date with an offset that does not shift the instant", `"\/Date(1506409448000-0700)\/"`, `"2017-09-26T07:04:08Z"`},
		{"date with a positive offset", `"/Date(1724647396000+0300)/"`, `"2024-08-26T04:43:16Z"`},
		{"text that only starts like a date", `"/Date(soon)/"`, `"/Date(soon)/"`},
		{"decimal keeps its exact text", `1.0000000000`, `1.0000000000`},
		{"integer", `987654321`, `987654321`},
		{"boolean", `true`, `true`},
		{"null", `null`, `null`},
		{"string with an escaped newline", `"a\u000ab"`, `"a\nb"`},
		{"string with markup stays unescaped", `"Contoso & <Co>"`, `"Contoso & <Co>"`},
		{"unknown type passes through", `{"__type":"BooleanManagedProperty:http://schemas.microsoft.com/xrm/2011/Contracts","Value":true}`, `{"Value":true,"__type":"BooleanManagedProperty:http://schemas.microsoft.com/xrm/2011/Contracts"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) {
				var v any
				if err := json.Unmarshal([]byte(tt.value), &v); err != nil {
					t.Fatal(err)
				}
				target(m)["Attributes"] = []any{map[string]any{"key": "new_value", "value": json.RawMessage(tt.value)}}
			})
			ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
			if got := attr(t, ev, "new_value"); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParse_takes_a_delete_from_its_entity_reference_and_pre_image(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "opportunity-delete.json"), event.Hints{ReceivedAt: receivedAt})
	if ev.EventName != "OpportunityDeleted" || ev.Message != "Delete" || ev.RecordID != "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8" {
		t.Errorf("EventName, Message, RecordId = %s, %s, %s", ev.EventName, ev.Message, ev.RecordID)
	}
	if len(ev.ChangedFields) != 0 {
		t.Errorf("ChangedFields = %q, want none for a Delete", ev.ChangedFields)
	}
	if got := attr(t, ev, "estimatedvalue"); got != "12500.0000" {
		t.Errorf("estimatedvalue from the pre-image = %s", got)
	}
	if got := attr(t, ev, "name"); got != `"Contoso - 40 laptops (renewal)"` {
		t.Errorf("name from the pre-image = %s", got)
	}
	if ev.Timestamp != "2025-11-25T08:04:05Z" {
		t.Errorf("Timestamp = %s", ev.Timestamp)
	}
}

func TestParse_marks_a_size_exceeded_post_as_trimmed(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		name string
		h    event.Hints
	}{
		{"with the size-exceeded header", event.Hints{SizeExceeded: true, ReceivedAt: receivedAt}},
		{"without the header, from the missing InputParameters", event.Hints{ReceivedAt: receivedAt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := parse(t, p, sample(t, "size-exceeded.json"), tt.h)
			if !ev.Trimmed {
				t.Error("Trimmed = false")
			}
			if ev.EventName != "OpportunityUpdated" || ev.RecordID != "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8" {
				t.Errorf("EventName, RecordId = %s, %s", ev.EventName, ev.RecordID)
			}
			if ev.Attributes != nil || len(ev.ChangedFields) != 0 {
				t.Errorf("a trimmed body has no data, got Attributes %v, ChangedFields %q", keys(ev.Attributes), ev.ChangedFields)
			}
		})
	}
}

func TestParse_falls_back_to_the_receive_time_without_OperationCreatedOn(t *testing.T) {
	p := newParser(t)
	body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) { delete(m, "OperationCreatedOn") })
	if ev := parse(t, p, body, event.Hints{ReceivedAt: receivedAt}); ev.Timestamp != "2026-01-02T03:04:05Z" {
		t.Errorf("Timestamp = %s, want the receive time", ev.Timestamp)
	}
}

func TestParse_reads_the_compact_plugin_event(t *testing.T) {
	p := newParser(t)
	ev := parse(t, p, sample(t, "plugin-event.json"), event.Hints{ReceivedAt: receivedAt})
	want := event.Event{
		SchemaVersion: event.SchemaVersion,
		EventID:       ev.EventID,
		CorrelationID: ev.EventID,
		EventName:     "OpportunityUpdated",
		Entity:        "opportunity",
		Message:       "Update",
		RecordID:      "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",
		ChangedFields: []string{"estimatedvalue", "name"},
		TriggeredBy:   "7a41d1a4-3c6b-ef11-a670-000d3a5c1e22",
		Timestamp:     "2025-11-25T07:04:05Z",
		Source:        event.SourcePlugin,
	}
	got, _ := json.Marshal(ev)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) || ev.EventID == "" {
		t.Errorf("got  %s\nwant %s", got, wantJSON)
	}
}

func TestParse_derives_plugin_entity_only_when_unambiguous(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		body, entity, message string
	}{
		{`{"EventName":"AccountCreated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T09:04:05+02:00"}`, "account", "Create"},
		{`{"EventName":"NewCustomactivityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, "", "Update"},
		{`{"EventName":"OpportunityWon","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, "", ""},
		{`{"EventName":"A` + strings.Repeat("b", 128) + `Deleted","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, "", "Delete"},
		{`{"EventName":"NewThingUpdated","Entity":"new_thing","Message":"Update","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, "new_thing", "Update"},
	}
	for _, tt := range tests {
		ev := parse(t, p, []byte(tt.body), event.Hints{})
		if ev.Entity != tt.entity || ev.Message != tt.message {
			t.Errorf("%s: Entity, Message = %q, %q; want %q, %q", tt.body, ev.Entity, ev.Message, tt.entity, tt.message)
		}
		if ev.Timestamp != "2025-11-25T07:04:05Z" {
			t.Errorf("Timestamp = %s, want UTC", ev.Timestamp)
		}
	}
}

func TestParse_gives_one_EventId_per_operation_and_step(t *testing.T) {
	p := newParser(t)
	body := sample(t, "opportunity-update.json")
	first := parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
	again := parse(t, p, body, event.Hints{ReceivedAt: receivedAt.Add(time.Minute)})
	if first.EventID != again.EventID {
		t.Errorf("the same body posted twice got %s and %s", first.EventID, again.EventID)
	}
	upper := mutate(t, body, func(m map[string]any) {
		m["PrimaryEntityId"] = strings.ToUpper(m["PrimaryEntityId"].(string))
		m["OperationId"] = strings.ToUpper(m["OperationId"].(string))
	})
	if ev := parse(t, p, upper, event.Hints{ReceivedAt: receivedAt}); ev.EventID != first.EventID {
		t.Errorf("upper-case ids changed the EventId: %s vs %s", ev.EventID, first.EventID)
	}
	for name, change := range map[string]func(map[string]any){
		"another operation": func(m map[string]any) { m["OperationId"] = "d81f4c6a-9e51-f011-8f7c-000d3a5c1e23" },
		"another step": func(m map[string]any) {
			m["OwningExtension"].(map[string]any)["Id"] = "4e2b7c91-a35d-ef11-bfe3-6045bd03d9d9"
		},
		"another record":       func(m map[string]any) { m["PrimaryEntityId"] = "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d9" },
		"another organization": func(m map[string]any) { m["OrganizationId"] = "1b6a0f3e-2d4c-4e8a-9f5b-6c7d8e9fa0b2" },
	} {
		t.Run(name, func(t *testing.T) {
			ev := parse(t, p, mutate(t, body, change), event.Hints{ReceivedAt: receivedAt})
			if ev.EventID == first.EventID {
				t.Errorf("EventId %s did not change", ev.EventID)
			}
		})
	}
	t.Run("plugin event with the same instant in another offset", func(t *testing.T) {
		a := parse(t, p, sample(t, "plugin-event.json"), event.Hints{})
		b := parse(t, p, mutate(t, sample(t, "plugin-event.json"), func(m map[string]any) {
			m["Timestamp"] = "2025-11-25T09:04:05+02:00"
			m["ChangedFields"] = []any{"name", "estimatedvalue"}
		}), event.Hints{})
		if a.EventID != b.EventID {
			t.Errorf("EventIds differ: %s vs %s", a.EventID, b.EventID)
		}
	})
}

func TestParse_tells_operations_apart_when_OperationId_is_the_empty_GUID(t *testing.T) {
	// OperationId is a non-nullable .NET Guid: a context with no system job behind it carries
	// Guid.Empty. Taken as the operation, it would give every change to a record through one
	// step the same EventId, and duplicate detection would silently drop all but the first.
	p := newParser(t)
	withRequest := func(requestID string) []byte {
		return mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) {
			m["OperationId"] = "00000000-0000-0000-0000-000000000000"
			m["RequestId"] = requestID
		})
	}
	a := parse(t, p, withRequest("5a0c7f2e-1b3d-4e6f-8a9b-0c1d2e3f4a5b"), event.Hints{ReceivedAt: receivedAt})
	b := parse(t, p, withRequest("6b1d803f-2c4e-4f70-9bac-1d2e3f4a5b6c"), event.Hints{ReceivedAt: receivedAt})
	if a.EventID == b.EventID {
		t.Errorf("two requests got the one EventId %s", a.EventID)
	}
	again := parse(t, p, withRequest("5a0c7f2e-1b3d-4e6f-8a9b-0c1d2e3f4a5b"), event.Hints{ReceivedAt: receivedAt})
	if again.EventID != a.EventID {
		t.Errorf("the same request posted twice got %s and %s", a.EventID, again.EventID)
	}
}

func TestParse_rejects_a_body_that_is_not_a_JSON_object_as_malformed(t *testing.T) {
	p := newParser(t)
	tests := map[string]struct {
		body, inMessage string
	}{
		"truncated JSON":   {`{"MessageName":`, "offset 15"},
		"garbage":          {`hello`, "offset 1"},
		"an array":         {`[{"EventName":"X"}]`, "array"},
		"a string":         {`  "x"`, "offset 2"},
		"null":             {`null`, "null"},
		"empty":            {``, "offset 0"},
		"trailing garbage": {`{} {}`, "offset 4"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := p.Parse([]byte(tt.body), event.Hints{})
			if !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.inMessage) {
				t.Errorf("error %q does not mention %q", err, tt.inMessage)
			}
		})
	}
}

func TestParse_points_at_each_bad_field(t *testing.T) {
	p := newParser(t)
	update := sample(t, "opportunity-update.json")
	tests := []struct {
		name   string
		change func(m map[string]any)
		want   []string
		detail string
	}{
		{"missing MessageName", func(m map[string]any) { delete(m, "MessageName") }, []string{"/MessageName"}, "is required"},
		{"missing PrimaryEntityName and no Target to name the table", func(m map[string]any) {
			delete(m, "PrimaryEntityName")
			m["InputParameters"] = nil
		}, []string{"/PrimaryEntityName"}, "is required when no Target names the table"},
		{"non-GUID id", func(m map[string]any) { m["OrganizationId"] = "org-1" }, []string{"/OrganizationId"}, "GUID"},
		{"non-GUID id inside the Target", func(m map[string]any) { target(m)["Id"] = "c3e9a2b8" }, []string{"/InputParameters/0/value/Id"}, "GUID"},
		{"non-GUID lookup id", func(m map[string]any) {
			target(m)["Attributes"].([]any)[4].(map[string]any)["value"].(map[string]any)["Id"] = "me"
		}, []string{"/InputParameters/0/value/Attributes/4/value/Id"}, "GUID"},
		{"bad logical name", func(m map[string]any) { m["PrimaryEntityName"] = "Opportunity" }, []string{"/PrimaryEntityName"}, "logical name"},
		{"bad attribute key", func(m map[string]any) {
			target(m)["Attributes"].([]any)[1].(map[string]any)["key"] = "Name"
		}, []string{"/InputParameters/0/value/Attributes/1/key"}, "logical name"},
		{"bad message name", func(m map[string]any) { m["MessageName"] = "Up date" }, []string{"/MessageName"}, "message name"},
		{"message name without a letter to name the event by", func(m map[string]any) { m["MessageName"] = "_" }, []string{"/MessageName"}, "message name"},
		// An ISO 8601 date is read (TestParse_reads_an_ISO_8601_OperationCreatedOn); this is neither.
		{"date in the wrong format", func(m map[string]any) { m["OperationCreatedOn"] = "25/11/2025 07:04:05" }, []string{"/OperationCreatedOn"}, "/Date("},
		{"date offset out of range", func(m map[string]any) { m["OperationCreatedOn"] = "/Date(1764054245000+2500)/" }, []string{"/OperationCreatedOn"}, "offset"},
		{"attribute date out of range", func(m map[string]any) {
			target(m)["Attributes"].([]any)[3].(map[string]any)["value"] = "/Date(999999999999999999)/"
		}, []string{"/InputParameters/0/value/Attributes/3/value"}, "years"},
		{"Depth as a string", func(m map[string]any) { m["Depth"] = "1" }, []string{"/Depth"}, "must be an integer"},
		{"InputParameters as an object", func(m map[string]any) { m["InputParameters"] = map[string]any{"Target": nil} }, []string{"/InputParameters"}, "array"},
		{"money as a string", func(m map[string]any) {
			target(m)["Attributes"].([]any)[0].(map[string]any)["value"].(map[string]any)["Value"] = "12500"
		}, []string{"/InputParameters/0/value/Attributes/0/value/Value"}, "number"},
		{"option set value with a fraction", func(m map[string]any) {
			img := m["PostEntityImages"].([]any)[0].(map[string]any)["value"].(map[string]any)
			img["Attributes"].([]any)[3].(map[string]any)["value"].(map[string]any)["Value"] = json.Number("2.5")
		}, []string{"/PostEntityImages/0/value/Attributes/3/value/Value"}, "integer"},
		{"update without a Target", func(m map[string]any) { m["InputParameters"] = []any{} }, []string{"/InputParameters"}, "Target"},
		{"delete target without an id", func(m map[string]any) {
			m["InputParameters"] = []any{map[string]any{"key": "Target", "value": map[string]any{"LogicalName": "opportunity"}}}
		}, []string{"/InputParameters/0/value/Id"}, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Parse(mutate(t, update, tt.change), event.Hints{ReceivedAt: receivedAt})
			if got := pointers(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("pointers = %q, want %q (%v)", got, tt.want, err)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error %q does not say %q", err, tt.detail)
			}
		})
	}
}

func TestParse_lists_every_problem_at_once(t *testing.T) {
	p := newParser(t)
	body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) {
		delete(m, "MessageName")
		m["OrganizationId"] = "not-a-guid"
		m["OperationCreatedOn"] = "yesterday"
	})
	_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
	want := []string{"/MessageName", "/OperationCreatedOn", "/OrganizationId"}
	if got := pointers(t, err); !slices.Equal(got, want) {
		t.Errorf("pointers = %q, want %q", got, want)
	}
	var verr *event.ValidationError
	if errors.As(err, &verr) && verr.Kind != event.KindRemoteExecutionContext {
		t.Errorf("Kind = %s", verr.Kind)
	}
}

func TestParse_points_at_bad_plugin_event_fields(t *testing.T) {
	p := newParser(t)
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"bad record id and missing timestamp", `{"EventName":"OpportunityUpdated","RecordId":"42","TriggeredBy":"x"}`, []string{"/RecordId", "/Timestamp"}},
		{"impossible date", `{"EventName":"OpportunityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-02-30T00:00:00Z"}`, []string{"/Timestamp"}},
		{"date that leaves RFC 3339's range in UTC", `{"EventName":"OpportunityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"9999-12-31T23:59:59-01:00"}`, []string{"/Timestamp"}},
		{"bad changed field", `{"EventName":"OpportunityUpdated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","ChangedFields":["name","Estimated Value"],"TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, []string{"/ChangedFields/1"}},
		{"event name not PascalCase", `{"EventName":"opportunity_updated","RecordId":"c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8","TriggeredBy":"x","Timestamp":"2025-11-25T07:04:05Z"}`, []string{"/EventName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Parse([]byte(tt.body), event.Hints{})
			if got := pointers(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("pointers = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}

func TestEventNameFor_follows_the_documented_rule(t *testing.T) {
	tests := []struct{ entity, message, want string }{
		{"opportunity", "Update", "OpportunityUpdated"},
		{"new_customactivity", "Create", "NewCustomactivityCreated"},
		{"account", "Delete", "AccountDeleted"},
		{"opportunity", "Win", "OpportunityWin"},
		{"account", "new_Approve", "AccountNewApprove"},
		{"none", "new_RunReport", "NewRunReport"},
		{"_", "Update", "Updated"},
	}
	for _, tt := range tests {
		if got := event.EventNameFor(tt.entity, tt.message); got != tt.want {
			t.Errorf("EventNameFor(%q, %q) = %q, want %q", tt.entity, tt.message, got, tt.want)
		}
	}
}

func TestParse_refuses_a_Timestamp_offset_beyond_23_59(t *testing.T) {
	p := newParser(t)
	withTimestamp := func(ts string) []byte {
		return mutate(t, sample(t, "plugin-event.json"), func(m map[string]any) { m["Timestamp"] = ts })
	}
	for _, ts := range []string{"2025-11-25T07:04:05+24:00", "2025-11-25T07:04:05+23:60", "2025-11-25T07:04:05-24:00", "2025-11-25T07:04:05.5+99:00"} {
		t.Run(ts, func(t *testing.T) {
			_, err := p.Parse(withTimestamp(ts), event.Hints{})
			if got := pointers(t, err); !slices.Equal(got, []string{"/Timestamp"}) {
				t.Errorf("pointers = %q (%v)", got, err)
			}
		})
	}
	for ts, utc := range map[string]string{
		"2025-11-25T07:04:05+23:59": "2025-11-24T07:05:05Z",
		"2025-11-25T07:04:05-00:00": "2025-11-25T07:04:05Z",
	} {
		if ev := parse(t, p, withTimestamp(ts), event.Hints{}); ev.Timestamp != utc {
			t.Errorf("Timestamp %s = %s, want %s", ts, ev.Timestamp, utc)
		}
	}
}

func TestParse_refuses_an_OperationCreatedOn_offset_beyond_2359(t *testing.T) {
	p := newParser(t)
	for _, date := range []string{"/Date(1764054245000+2400)/", "/Date(1764054245000+2360)/", "/Date(1764054245000-2400)/"} {
		body := mutate(t, sample(t, "opportunity-update.json"), func(m map[string]any) { m["OperationCreatedOn"] = date })
		_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
		if got := pointers(t, err); !slices.Equal(got, []string{"/OperationCreatedOn"}) {
			t.Errorf("%s: pointers = %q (%v)", date, got, err)
		}
	}
}
