package event_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

// The real Update of contact from Microsoft's documentation, as the tests below trim it.
const contactFixture = "docs-powerapps-update-contact-async.json"

func TestParse_accepts_a_context_without_the_users_the_organization_or_the_ids_and_leaves_them_out(t *testing.T) {
	p := newParser(t)
	full := parse(t, p, fixture(t, contactFixture), event.Hints{ReceivedAt: receivedAt})
	trimmed := mutate(t, fixture(t, contactFixture), func(m map[string]any) {
		for _, name := range []string{"UserId", "InitiatingUserId", "OrganizationId", "BusinessUnitId", "CorrelationId",
			"OperationId", "RequestId", "PrimaryEntityId", "OperationCreatedOn", "Depth", "Stage", "Mode", "OwningExtension"} {
			delete(m, name)
		}
	})

	ev := parse(t, p, trimmed, event.Hints{ReceivedAt: receivedAt})

	if ev.TriggeredBy != "" || ev.OrganizationID != "" || ev.Depth != 0 || ev.Stage != 0 || ev.Mode != nil || ev.StepID != "" {
		t.Errorf("event = %+v; want what the context lacks left out", ev)
	}
	if ev.RecordID != full.RecordID || ev.EventName != "ContactUpdated" || !slices.Equal(ev.ChangedFields, full.ChangedFields) ||
		len(ev.Attributes) != len(full.Attributes) {
		t.Errorf("event = %+v; want the record, name and columns of the full context %+v", ev, full)
	}
	if ev.Timestamp != event.FormatTime(receivedAt) {
		t.Errorf("Timestamp = %s, want the receive time", ev.Timestamp)
	}
	if ev.EventID == full.EventID || ev.CorrelationID != ev.EventID {
		t.Errorf("EventId %s (full context %s), CorrelationId %s; want an id of its own, standing in as correlation id", ev.EventID, full.EventID, ev.CorrelationID)
	}
	again := parse(t, p, trimmed, event.Hints{ReceivedAt: receivedAt.Add(1e9)})
	other := parse(t, p, mutate(t, trimmed, func(m map[string]any) { target(m)["Attributes"].([]any)[0].(map[string]any)["value"] = "Jim" }),
		event.Hints{ReceivedAt: receivedAt})
	if again.EventID != ev.EventID || other.EventID == ev.EventID {
		t.Errorf("EventIds: %s, re-posted %s, another change %s; want a re-post to keep it and another change to get another", ev.EventID, again.EventID, other.EventID)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DecodeCanonical(body); err != nil {
		t.Errorf("the worker refuses the trimmed context's event: %v", err)
	}
}

func TestParse_accepts_each_optional_member_absent_null_or_all_zero(t *testing.T) {
	p := newParser(t)
	for _, name := range []string{"UserId", "InitiatingUserId", "OrganizationId", "BusinessUnitId", "CorrelationId", "PrimaryEntityId", "PrimaryEntityName"} {
		for _, value := range []any{nil, "00000000-0000-0000-0000-000000000000", "absent"} {
			if name == "PrimaryEntityName" && value != "absent" && value != nil {
				continue // a name, not an id: the Target names the table
			}
			body := mutate(t, fixture(t, contactFixture), func(m map[string]any) {
				if value == "absent" {
					delete(m, name)
				} else {
					m[name] = value
				}
			})
			ev, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
			if err != nil {
				t.Errorf("%s %v: %v", name, value, err)
				continue
			}
			if ev.RecordID != "6d81597f-0f9f-e711-8122-000d3aa2331c" || ev.Entity != "contact" || ev.CorrelationID == "" {
				t.Errorf("%s %v: event %+v", name, value, ev)
			}
		}
	}
	// Without UserId the initiating user triggers the event, and without both nobody does.
	ev := parse(t, p, mutate(t, fixture(t, contactFixture), func(m map[string]any) { delete(m, "InitiatingUserId") }), event.Hints{})
	if ev.TriggeredBy != "75c2dd85-e89e-e711-8122-000d3aa2331c" {
		t.Errorf("TriggeredBy = %q, want UserId", ev.TriggeredBy)
	}
}

func TestParse_refuses_a_context_without_a_message_or_a_table(t *testing.T) {
	p := newParser(t)
	for name, change := range map[string]func(m map[string]any){
		"/MessageName":       func(m map[string]any) { delete(m, "MessageName") },
		"/PrimaryEntityName": func(m map[string]any) { delete(m, "PrimaryEntityName"); m["InputParameters"] = nil },
	} {
		_, err := p.Parse(mutate(t, fixture(t, contactFixture), change), event.Hints{})
		if got := pointers(t, err); !slices.Equal(got, []string{name}) {
			t.Errorf("pointers = %q, want %s", got, name)
		}
	}
}

func TestParse_reads_typed_wrappers_of_System_values_as_the_values_they_wrap(t *testing.T) {
	p := newParser(t)
	plain := parse(t, p, fixture(t, contactFixture), event.Hints{ReceivedAt: receivedAt})
	wrap := func(typ string, v any) map[string]any {
		return map[string]any{"__type": typ + ":#System", "__value": v}
	}
	wrapped := mutate(t, fixture(t, contactFixture), func(m map[string]any) {
		for _, name := range []string{"UserId", "InitiatingUserId", "OrganizationId", "CorrelationId", "PrimaryEntityId"} {
			m[name] = wrap("Guid", m[name])
		}
		m["OperationCreatedOn"] = wrap("DateTime", m["OperationCreatedOn"])
		m["Depth"] = wrap("Int32", m["Depth"])
		for _, a := range target(m)["Attributes"].([]any) {
			kv := a.(map[string]any)
			switch kv["key"] {
			case "contactid":
				kv["value"] = wrap("Guid", kv["value"])
			case "modifiedon":
				kv["value"] = wrap("DateTime", kv["value"])
			case "firstname":
				kv["value"] = wrap("String", kv["value"])
			}
		}
	})

	got := parse(t, p, wrapped, event.Hints{ReceivedAt: receivedAt})

	a, _ := json.Marshal(plain)
	b, _ := json.Marshal(got)
	if string(a) != string(b) {
		t.Errorf("wrapped context gives\n%s\nwant the plain context's\n%s", b, a)
	}
	// An object with other members, or a type outside System, is not a wrapper.
	notWrapper := mutate(t, fixture(t, contactFixture), func(m map[string]any) {
		m["UserId"] = map[string]any{"__type": "Guid:#System", "__value": m["UserId"], "extra": 1}
	})
	if _, err := p.Parse(notWrapper, event.Hints{}); !slices.Equal(pointers(t, err), []string{"/UserId"}) {
		t.Errorf("a wrapper with an extra member: %v, want /UserId refused", err)
	}
}

func TestParse_a_context_without_its_table_name_lists_no_primary_key_as_changed(t *testing.T) {
	p := newParser(t)
	withKey := func(m map[string]any) {
		attrs := target(m)["Attributes"].([]any)
		target(m)["Attributes"] = append(attrs, map[string]any{"key": "contactid", "value": "6d81597f-0f9f-e711-8122-000d3aa2331c"})
	}
	full := parse(t, p, mutate(t, fixture(t, contactFixture), withKey), event.Hints{ReceivedAt: receivedAt})
	nameless := parse(t, p, mutate(t, fixture(t, contactFixture), func(m map[string]any) {
		withKey(m)
		delete(m, "PrimaryEntityName")
		delete(m, "PrimaryEntityId")
	}), event.Hints{ReceivedAt: receivedAt})
	if slices.Contains(full.ChangedFields, "contactid") || slices.Contains(nameless.ChangedFields, "contactid") {
		t.Errorf("ChangedFields %v (named context) and %v (nameless); want the primary key in neither", full.ChangedFields, nameless.ChangedFields)
	}
	if !slices.Equal(full.ChangedFields, nameless.ChangedFields) {
		t.Errorf("ChangedFields %v, want the named context's %v", nameless.ChangedFields, full.ChangedFields)
	}
}
