package dataverse_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

func TestRead_returns_the_selected_columns_that_event_reads_as_plain_JSON_with_lookups_as_references(t *testing.T) {
	srv, c := newWebAPI(t)
	id := srv.Seed("accounts", map[string]any{
		"name":         "Contoso",
		"creditlimit":  json.Number("50000.0000"),
		"industrycode": 7,
		"industrycode@OData.Community.Display.V1.FormattedValue":            "Consulting",
		"_primarycontactid_value":                                           "5E2D6C1A-0B9F-4E8D-A7C6-B5A4F3E2D1C0",
		"_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname":  "contact",
		"_primarycontactid_value@OData.Community.Display.V1.FormattedValue": "Ana Diaz",
		"_parentaccountid_value":                                            nil,
		"_ownerid_value":                                                    "7a41d1a4-3c6b-ef11-a670-000d3a5c1e22",
		"_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":           "systemuser",
		"description": "not selected",
	})

	rec, err := c.Read(context.Background(), "account", id,
		[]string{"name", "creditlimit", "industrycode", "_primarycontactid_value", "_parentaccountid_value", "_ownerid_value"})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	got, err := event.RecordValues(rec)
	if err != nil {
		t.Fatalf("RecordValues: %v", err)
	}

	want := map[string]any{
		"accountid":    id, // the Web API always returns the key
		"name":         "Contoso",
		"creditlimit":  json.Number("50000.0000"), // exact, as in event Attributes
		"industrycode": json.Number("7"),          // the formatted value is dropped
		"primarycontactid": map[string]any{
			"id": "5e2d6c1a-0b9f-4e8d-a7c6-b5a4f3e2d1c0", "logicalName": "contact", "name": "Ana Diaz",
		},
		"parentaccountid": nil,
		// No formatted value: name is null, as for an EntityReference without a Name.
		"ownerid": map[string]any{"id": "7a41d1a4-3c6b-ef11-a670-000d3a5c1e22", "logicalName": "systemuser", "name": nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read =\n%#v\nwant\n%#v", got, want)
	}

	last := srv.Requests()[len(srv.Requests())-1]
	if last.Method != "GET" || last.Path != "/api/data/v9.2/accounts("+id+")" {
		t.Errorf("request = %s, want GET accounts(<id>)", last)
	}
	if sel := last.Query.Get("$select"); sel != "name,creditlimit,industrycode,_primarycontactid_value,_parentaccountid_value,_ownerid_value" {
		t.Errorf("$select = %q", sel)
	}
	if p := last.Header.Get("Prefer"); !strings.Contains(p, "Microsoft.Dynamics.CRM.lookuplogicalname") || !strings.Contains(p, "OData.Community.Display.V1.FormattedValue") {
		t.Errorf("Prefer = %q, want the lookup table and formatted value annotations asked for", p)
	}
}

func TestRead_reports_a_missing_record_as_ErrRecordNotFound_with_status_404(t *testing.T) {
	_, c := newWebAPI(t)
	const gone = "0d6f1c2b-3a4e-4f5d-8c9b-1a2b3c4d5e6f"

	_, err := c.Read(context.Background(), "account", gone, []string{"name"})

	var apiErr *dataverse.Error
	if !errors.Is(err, dataverse.ErrRecordNotFound) || !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("err = %v, want ErrRecordNotFound wrapping a 404 *Error", err)
	}
	if !strings.Contains(err.Error(), "account("+gone+")") {
		t.Errorf("err = %q, want it to name the record", err)
	}
}

func TestRead_refuses_input_no_request_can_be_built_from(t *testing.T) {
	srv, c := newWebAPI(t)
	tests := map[string]struct {
		id      string
		columns []string
	}{
		"id not a GUID":           {"42", []string{"name"}},
		"no columns":              {"0d6f1c2b-3a4e-4f5d-8c9b-1a2b3c4d5e6f", nil},
		"column not a name":       {"0d6f1c2b-3a4e-4f5d-8c9b-1a2b3c4d5e6f", []string{"name,description"}},
		"column with expand text": {"0d6f1c2b-3a4e-4f5d-8c9b-1a2b3c4d5e6f", []string{"name&$expand=x"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.Read(context.Background(), "account", tt.id, tt.columns)
			if !errors.Is(err, dataverse.ErrInvalidInput) {
				t.Errorf("err = %v, want ErrInvalidInput", err)
			}
		})
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}
