package dataverse_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/dvrelay/dvrelay/internal/dataverse"
)

func TestWithAnnotations_asks_for_them_with_Prefer(t *testing.T) {
	srv, c := newWebAPI(t)
	id := srv.Seed("accounts", map[string]any{
		"_primarycontactid_value": "00000000-0000-0000-0000-0000000000c1",
		"_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "contact",
	})
	ctx := dataverse.WithAnnotations(context.Background(), dataverse.AnnotationLookupLogicalName, dataverse.AnnotationFormattedValue)

	var plain, annotated map[string]any
	if err := c.GetRecord(context.Background(), "accounts", id, nil, &plain); err != nil {
		t.Fatal(err)
	}
	if err := c.GetRecord(ctx, "accounts", id, url.Values{"$select": {"_primarycontactid_value"}}, &annotated); err != nil {
		t.Fatal(err)
	}

	reqs := srv.Requests()
	if got := reqs[len(reqs)-1].Header.Get("Prefer"); got != `odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname,OData.Community.Display.V1.FormattedValue"` {
		t.Errorf("Prefer = %q", got)
	}
	if _, ok := plain["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"]; ok || reqs[0].Header.Get("Prefer") != "" {
		t.Errorf("a read without WithAnnotations got %v (Prefer %q)", plain, reqs[0].Header.Get("Prefer"))
	}
	if annotated["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] != "contact" {
		t.Errorf("annotated read = %v", annotated)
	}
}
