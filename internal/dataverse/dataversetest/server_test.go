package dataversetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
)

func do(t *testing.T, srv *dataversetest.Server, method, path, body string, header ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+dataversetest.APIPath+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, resp.Header, out
}

func values(out map[string]any) []map[string]any {
	var recs []map[string]any
	for _, v := range out["value"].([]any) {
		recs = append(recs, v.(map[string]any))
	}
	return recs
}

var serviceEndpoints = dataversetest.Table{LogicalName: "serviceendpoint", EntitySet: "serviceendpoints", WriteOnly: []string{"authvalue"}}

func TestServer_filters_on_text_guid_number_and_null_joined_by_and(t *testing.T) {
	srv := dataversetest.NewServer(t, serviceEndpoints)
	a := srv.Seed("serviceendpoints", map[string]any{"name": "It's A", "contract": 8, "_parent_value": nil})
	srv.Seed("serviceendpoints", map[string]any{"name": "b", "contract": 8})
	srv.Seed("serviceendpoints", map[string]any{"name": "It's A", "contract": 7})

	for filter, want := range map[string]int{
		"name eq 'it''s a' and contract eq 8":     1, // text without regard to case, '' for a quote
		"serviceendpointid eq " + a:               1,
		"contract eq 8":                           2,
		"_parent_value eq null and contract eq 7": 1,
		"name eq 'nobody'":                        0,
	} {
		status, _, out := do(t, srv, "GET", "serviceendpoints?$filter="+strings.ReplaceAll(filter, " ", "%20"), "")
		if status != 200 || len(values(out)) != want {
			t.Errorf("$filter=%s: %d with %v, want %d records", filter, status, out["value"], want)
		}
	}
}

func TestServer_select_top_and_write_only_columns(t *testing.T) {
	srv := dataversetest.NewServer(t, serviceEndpoints)
	srv.Seed("serviceendpoints", map[string]any{"name": "a", "authvalue": "secret", "url": "https://x"})
	srv.Seed("serviceendpoints", map[string]any{"name": "b", "authvalue": "secret"})

	_, _, out := do(t, srv, "GET", "serviceendpoints?$select=name,authvalue,description&$top=1", "")
	recs := values(out)
	if len(recs) != 1 {
		t.Fatalf("$top=1 gave %d records", len(recs))
	}
	r := recs[0]
	if _, leaked := r["authvalue"]; leaked || r["name"] != "a" || r["url"] != nil || r["serviceendpointid"] == nil {
		t.Errorf("record = %v; want name and the id, a null description, no url, never authvalue", r)
	}
	if desc, has := r["description"]; !has || desc != nil {
		t.Errorf("selected unset column = %v, want null", desc)
	}
}

func TestServer_create_update_delete_as_the_Web_API_documents(t *testing.T) {
	srv := dataversetest.NewServer(t, serviceEndpoints)

	status, h, _ := do(t, srv, "POST", "serviceendpoints", `{"name":"a"}`)
	if status != 204 || !strings.HasPrefix(h.Get("OData-EntityId"), srv.URL()+dataversetest.APIPath+"serviceendpoints(") {
		t.Fatalf("POST: %d, OData-EntityId %q", status, h.Get("OData-EntityId"))
	}
	id := strings.TrimSuffix(strings.SplitN(h.Get("OData-EntityId"), "(", 2)[1], ")")

	if status, _, _ := do(t, srv, "PATCH", "serviceendpoints("+id+")", `{"name":"b"}`, "If-Match", "*"); status != 204 {
		t.Errorf("PATCH: %d", status)
	}
	missing := "00000000-0000-0000-0000-0000000000aa"
	status, _, out := do(t, srv, "PATCH", "serviceendpoints("+missing+")", `{"name":"c"}`, "If-Match", "*")
	if e, _ := out["error"].(map[string]any); status != 404 || e["code"] != dataversetest.CodeObjectDoesNotExist {
		t.Errorf("PATCH of a missing record with If-Match: %d %v, want 404 %s", status, out, dataversetest.CodeObjectDoesNotExist)
	}
	if status, _, _ := do(t, srv, "PATCH", "serviceendpoints("+missing+")", `{"name":"c"}`); status != 204 || len(srv.Records("serviceendpoints")) != 2 {
		t.Errorf("PATCH without If-Match is an upsert: %d, %d records", status, len(srv.Records("serviceendpoints")))
	}
	if status, _, _ := do(t, srv, "DELETE", "serviceendpoints("+id+")", ""); status != 204 {
		t.Errorf("DELETE: %d", status)
	}
	if status, _, _ := do(t, srv, "DELETE", "serviceendpoints("+id+")", ""); status != 404 {
		t.Errorf("second DELETE: %d, want 404", status)
	}
	if rec, _ := srv.Record("serviceendpoints", missing); rec["name"] != "c" {
		t.Errorf("upserted record = %v", rec)
	}
}

func TestServer_answers_entity_definitions_for_declared_tables(t *testing.T) {
	srv := dataversetest.NewServer(t, dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities"})
	status, _, out := do(t, srv, "GET", "EntityDefinitions(LogicalName='opportunity')?$select=EntitySetName", "")
	if status != 200 || out["EntitySetName"] != "opportunities" || out["PrimaryIdAttribute"] != "opportunityid" {
		t.Errorf("EntityDefinitions: %d %v", status, out)
	}
	if status, _, _ := do(t, srv, "GET", "EntityDefinitions(LogicalName='nope')", ""); status != 404 {
		t.Errorf("unknown table: %d, want 404", status)
	}
	if status, _, _ := do(t, srv, "GET", "nothings", ""); status != 404 {
		t.Errorf("unknown entity set: %d, want 404", status)
	}
}

func TestServer_lists_a_tables_attributes_by_logical_name(t *testing.T) {
	srv := dataversetest.NewServer(t, dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities", Columns: []string{"name", "estimatedvalue"}},
		dataversetest.Table{LogicalName: "account", EntitySet: "accounts"})
	status, _, out := do(t, srv, "GET", "EntityDefinitions(LogicalName='opportunity')/Attributes?$select=LogicalName", "")
	if status != 200 {
		t.Fatalf("Attributes: %d %v", status, out)
	}
	var names []string
	for _, a := range values(out) {
		names = append(names, a["LogicalName"].(string))
		if a["MetadataId"] == nil {
			t.Errorf("attribute %v has no MetadataId", a)
		}
	}
	if strings.Join(names, ",") != "opportunityid,name,estimatedvalue" {
		t.Errorf("attributes = %v", names)
	}
	if status, _, _ := do(t, srv, "GET", "EntityDefinitions(LogicalName='nope')/Attributes", ""); status != 404 {
		t.Errorf("unknown table: %d, want 404", status)
	}
	if status, _, out := do(t, srv, "GET", "EntityDefinitions(LogicalName='account')/Attributes", ""); status != 400 || !strings.Contains(strings.ToLower(strings.TrimSpace(out["error"].(map[string]any)["message"].(string))), "dataversetest") {
		t.Errorf("table without declared columns: %d %v, want a dataversetest 400", status, out)
	}
}

func TestServer_filters_numbers_and_date_times_with_ge(t *testing.T) {
	jobs := dataversetest.Table{LogicalName: "asyncoperation", EntitySet: "asyncoperations"}
	srv := dataversetest.NewServer(t, jobs)
	srv.Seed("asyncoperations", map[string]any{"statuscode": 31, "createdon": "2026-10-31T23:59:59Z"})
	srv.Seed("asyncoperations", map[string]any{"statuscode": 31, "createdon": "2026-11-01T00:00:00Z"})
	srv.Seed("asyncoperations", map[string]any{"statuscode": 10, "createdon": "2026-11-02T08:30:00Z"})
	srv.Seed("asyncoperations", map[string]any{"statuscode": 31})

	for filter, want := range map[string]int{
		"createdon ge 2026-11-01T00:00:00Z":                      2, // inclusive; a record without the column never matches
		"createdon ge 2026-11-01T01:00:00+02:00":                 3, // offsets compare as instants
		"statuscode eq 31 and createdon ge 2026-11-01T00:00:00Z": 1,
		"statuscode ge 20":                                       3,
		"createdon eq 2026-11-02T08:30:00.000Z":                  1,
	} {
		status, _, out := do(t, srv, "GET", "asyncoperations?$filter="+url.QueryEscape(filter), "")
		if status != 200 || len(values(out)) != want {
			t.Errorf("$filter=%s: %d with %v, want %d records", filter, status, out, want)
		}
	}
	if status, _, _ := do(t, srv, "GET", "asyncoperations?$filter="+url.QueryEscape("name ge 'a'"), ""); status != 400 {
		t.Errorf("ge on text: %d, want 400 (not supported by the double)", status)
	}
}

func TestServer_returns_seeded_annotations_only_when_Prefer_asks(t *testing.T) {
	jobs := dataversetest.Table{LogicalName: "asyncoperation", EntitySet: "asyncoperations"}
	srv := dataversetest.NewServer(t, jobs)
	const lookup = "_regardingobjectid_value"
	const annotated = lookup + "@Microsoft.Dynamics.CRM.lookuplogicalname"
	id := srv.Seed("asyncoperations", map[string]any{"name": "job", lookup: "00000000-0000-0000-0000-0000000000aa", annotated: "opportunity"})

	for _, tc := range []struct {
		path, prefer string
		want         bool
	}{
		{"asyncoperations?$select=" + lookup, "", false},
		{"asyncoperations?$select=" + lookup, `odata.include-annotations="*"`, true},
		{"asyncoperations?$select=" + lookup, `odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`, true},
		{"asyncoperations?$select=" + lookup, `odata.include-annotations="Microsoft.Dynamics.CRM.*"`, true},
		{"asyncoperations?$select=" + lookup, `odata.include-annotations="OData.Community.Display.V1.FormattedValue"`, false},
		{"asyncoperations?$select=name", `odata.include-annotations="*"`, false}, // its column was not selected
		{"asyncoperations(" + id + ")", `odata.include-annotations="*"`, true},
		{"asyncoperations(" + id + ")", "", false},
	} {
		var header []string
		if tc.prefer != "" {
			header = []string{"Prefer", tc.prefer}
		}
		status, _, out := do(t, srv, "GET", tc.path, "", header...)
		rec := out
		if vs, ok := out["value"]; ok {
			rec = vs.([]any)[0].(map[string]any)
		}
		if _, got := rec[annotated]; status != 200 || got != tc.want {
			t.Errorf("GET %s with Prefer %q: %d, annotation returned %v, want %v (%v)", tc.path, tc.prefer, status, got, tc.want, rec)
		}
	}
}

func TestServer_returns_seeded_annotations_of_selected_columns_only_when_asked(t *testing.T) {
	accounts := dataversetest.Table{LogicalName: "account", EntitySet: "accounts"}
	srv := dataversetest.NewServer(t, accounts)
	id := srv.Seed("accounts", map[string]any{
		"name":                    "Contoso",
		"_primarycontactid_value": "5e2d6c1a-0b9f-4e8d-a7c6-b5a4f3e2d1c0",
		"_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname":  "contact",
		"_primarycontactid_value@OData.Community.Display.V1.FormattedValue": "Ana Diaz",
		"creditlimit": 50000,
		"creditlimit@OData.Community.Display.V1.FormattedValue": "$50,000.00",
	})
	path := "accounts(" + id + ")?$select=name,_primarycontactid_value"

	_, _, plain := do(t, srv, "GET", path, "")
	for k := range plain {
		if strings.Contains(k, "@") && k != "@odata.etag" && k != "@odata.context" {
			t.Errorf("annotation %s returned without Prefer: odata.include-annotations", k)
		}
	}

	_, _, annotated := do(t, srv, "GET", path, "", "Prefer", `odata.include-annotations="*"`)
	if annotated["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] != "contact" ||
		annotated["_primarycontactid_value@OData.Community.Display.V1.FormattedValue"] != "Ana Diaz" {
		t.Errorf("lookup annotations missing: %v", annotated)
	}
	if _, ok := annotated["creditlimit@OData.Community.Display.V1.FormattedValue"]; ok {
		t.Errorf("annotation of a column not selected was returned: %v", annotated)
	}
}
