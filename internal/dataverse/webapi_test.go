package dataverse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/dataverse/dataversetest"
)

var accounts = dataversetest.Table{LogicalName: "account", EntitySet: "accounts"}

func newWebAPI(t *testing.T) (*dataversetest.Server, *dataverse.Client) {
	t.Helper()
	srv := dataversetest.NewServer(t, accounts)
	srv.RequireToken("tok-webapi")
	c, err := dataverse.NewClient(srv.URL(), dataversetest.StaticCredential{Token: "tok-webapi"}, &dataverse.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

type account struct {
	ID   string `json:"accountid"`
	Name string `json:"name"`
}

func TestWebAPI_Create_returns_the_id_from_OData_EntityId_and_Get_finds_the_record_by_filter(t *testing.T) {
	srv, c := newWebAPI(t)
	ctx := context.Background()

	id, err := c.Create(ctx, "accounts", map[string]any{"name": "O'Brien & Sons", "revenue": 1000})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, ok := srv.Record("accounts", id); !ok {
		t.Fatalf("Create returned %q, which the server does not hold: %v", id, srv.Records("accounts"))
	}

	var found []account
	q := url.Values{"$filter": {"name eq " + dataverse.ODataString("O'Brien & Sons")}, "$select": {"name"}}
	if err := c.Get(ctx, "accounts", q, &found); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(found) != 1 || found[0].ID != id || found[0].Name != "O'Brien & Sons" {
		t.Fatalf("Get = %+v, want the one created account %s", found, id)
	}
	// OData reads '+' as a plus sign, so spaces must travel as %20, and option names keep their $.
	last := srv.Requests()[len(srv.Requests())-1]
	if strings.Contains(last.RawQuery, "+") || !strings.Contains(last.RawQuery, "$filter=name%20eq%20") {
		t.Errorf("query sent as %q; want $filter with spaces as %%20", last.RawQuery)
	}
}

func TestWebAPI_Get_follows_next_links_until_the_last_page(t *testing.T) {
	srv, c := newWebAPI(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		srv.Seed("accounts", map[string]any{"name": n})
	}
	srv.SetPageSize(2)

	var all []account
	if err := c.Get(context.Background(), "accounts", url.Values{"$orderby": {"name desc"}}, &all); err != nil {
		t.Fatalf("Get: %v", err)
	}
	var names []string
	for _, a := range all {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, ""); got != "edcba" {
		t.Errorf("names = %q, want all five in order edcba", got)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("requests = %d, want 3 pages", n)
	}
}

func TestWebAPI_Get_refuses_a_next_link_to_another_host(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the bearer token was sent to %s", r.URL)
	}))
	defer elsewhere.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"value":[{"accountid":"x"}],"@odata.nextLink":"`+elsewhere.URL+`/api/data/v9.2/accounts?$skiptoken=1"}`)
	}))
	defer api.Close()
	c, err := dataverse.NewClient(api.URL, dataversetest.StaticCredential{Token: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}

	var out []account
	err = c.Get(context.Background(), "accounts", nil, &out)
	if !errors.Is(err, dataverse.ErrInvalidResponse) {
		t.Fatalf("Get = %v, want ErrInvalidResponse", err)
	}
}

func TestWebAPI_UpdateRecord_patches_with_If_Match_and_a_missing_record_is_a_404_Error(t *testing.T) {
	srv, c := newWebAPI(t)
	ctx := context.Background()
	id := srv.Seed("accounts", map[string]any{"name": "before"})

	if err := c.UpdateRecord(ctx, "accounts", strings.ToUpper(id), map[string]any{"name": "after"}); err != nil {
		t.Fatalf("UpdateRecord: %v", err)
	}
	if rec, _ := srv.Record("accounts", id); rec["name"] != "after" {
		t.Errorf("record after PATCH = %v", rec)
	}
	last := srv.Requests()[len(srv.Requests())-1]
	if last.Method != http.MethodPatch || last.Header.Get("If-Match") != "*" {
		t.Errorf("sent %s with If-Match %q, want PATCH with If-Match *", last.Method, last.Header.Get("If-Match"))
	}

	missing := "11111111-2222-3333-4444-555555555555"
	err := c.UpdateRecord(ctx, "accounts", missing, map[string]any{"name": "x"})
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusNotFound || dvErr.Code != dataversetest.CodeObjectDoesNotExist {
		t.Fatalf("UpdateRecord of a missing record = %v, want a 404 *Error with code %s", err, dataversetest.CodeObjectDoesNotExist)
	}
	if len(srv.Records("accounts")) != 1 {
		t.Errorf("PATCH of a missing record created one: %v", srv.Records("accounts"))
	}
}

func TestWebAPI_GetRecord_and_Delete(t *testing.T) {
	srv, c := newWebAPI(t)
	ctx := context.Background()
	id := srv.Seed("accounts", map[string]any{"name": "gone soon"})

	var got account
	if err := c.GetRecord(ctx, "accounts", id, url.Values{"$select": {"name"}}, &got); err != nil || got.Name != "gone soon" {
		t.Fatalf("GetRecord = %+v, %v", got, err)
	}
	if err := c.Delete(ctx, "accounts", id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if len(srv.Records("accounts")) != 0 {
		t.Errorf("records after Delete = %v", srv.Records("accounts"))
	}
	var dvErr *dataverse.Error
	if err := c.Delete(ctx, "accounts", id); !errors.As(err, &dvErr) || dvErr.Status != http.StatusNotFound {
		t.Errorf("second Delete = %v, want a 404 *Error", err)
	}
	if err := c.GetRecord(ctx, "accounts", id, nil, &got); !errors.As(err, &dvErr) || dvErr.Status != http.StatusNotFound {
		t.Errorf("GetRecord of a deleted record = %v, want a 404 *Error", err)
	}
}

func TestWebAPI_429_is_an_Error_carrying_Retry_After(t *testing.T) {
	srv, c := newWebAPI(t)
	srv.Throttle(1, 7*time.Second)

	var out []account
	err := c.Get(context.Background(), "accounts", nil, &out)
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusTooManyRequests || dvErr.RetryAfter != 7*time.Second {
		t.Fatalf("Get under throttling = %v, want a 429 *Error with RetryAfter 7s", err)
	}
	if err := c.Get(context.Background(), "accounts", nil, &out); err != nil {
		t.Errorf("Get after the throttled request: %v", err)
	}
}

func TestWebAPI_rejects_input_that_cannot_form_a_request_without_sending_it(t *testing.T) {
	srv, c := newWebAPI(t)
	ctx := context.Background()
	var out []account
	for name, err := range map[string]error{
		"id not a GUID":          c.UpdateRecord(ctx, "accounts", "1 or 1=1", map[string]any{"a": 1}),
		"set with a slash":       c.Delete(ctx, "accounts/x", "11111111-2222-3333-4444-555555555555"),
		"create into a path":     func() error { _, err := c.Create(ctx, "accounts?x=1", map[string]any{}); return err }(),
		"path with a query":      c.Get(ctx, "accounts?$top=1", nil, &out),
		"path going up":          c.Get(ctx, "../accounts", nil, &out),
		"query option injection": c.Get(ctx, "accounts", url.Values{"$top=1&$filter": {"x"}}, &out),
		"out not a pointer":      c.Get(ctx, "accounts", nil, out),
	} {
		if !errors.Is(err, dataverse.ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", name, err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for invalid input: %v", n, srv.Requests())
	}
}

func TestDouble_answers_an_unsupported_filter_with_a_400_that_says_so(t *testing.T) {
	_, c := newWebAPI(t)
	var out []account
	err := c.Get(context.Background(), "accounts", url.Values{"$filter": {"contains(name,'x')"}}, &out)
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusBadRequest || !strings.HasPrefix(dvErr.Message, "dataversetest:") {
		t.Fatalf("Get with contains() = %v (message %q), want a 400 naming the double's limit", err, messageOf(err))
	}
}

func TestDouble_rejects_a_PascalCase_navigation_property_as_Dataverse_does(t *testing.T) {
	srv, c := newWebAPI(t)
	parent := srv.Seed("accounts", map[string]any{"name": "parent"})

	_, err := c.Create(context.Background(), "accounts", map[string]any{"ParentAccountId@odata.bind": "/accounts(" + parent + ")"})
	var dvErr *dataverse.Error
	if !errors.As(err, &dvErr) || dvErr.Status != http.StatusBadRequest {
		t.Fatalf("Create with a PascalCase bind = %v, want 400", err)
	}
	id, err := c.Create(context.Background(), "accounts", map[string]any{"parentaccountid@odata.bind": "/accounts(" + parent + ")"})
	if err != nil {
		t.Fatalf("Create with a lower-case bind: %v", err)
	}
	if rec, _ := srv.Record("accounts", id); rec["_parentaccountid_value"] != parent {
		t.Errorf("lookup stored as %v, want _parentaccountid_value %s", rec, parent)
	}
}

func messageOf(err error) string {
	var dvErr *dataverse.Error
	if errors.As(err, &dvErr) {
		return dvErr.Message
	}
	return ""
}

func TestDouble_serves_the_workers_Update_by_logical_name(t *testing.T) {
	srv := dataversetest.NewServer(t, dataversetest.Table{LogicalName: "opportunity", EntitySet: "opportunities"})
	c, err := dataverse.NewClient(srv.URL(), dataversetest.StaticCredential{Token: "t"}, &dataverse.Options{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	id := srv.Seed("opportunities", map[string]any{"name": "deal"})

	if err := c.Update(context.Background(), "opportunity", id, map[string]any{"new_creditscore": 712}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if rec, _ := srv.Record("opportunities", id); fmt.Sprint(rec["new_creditscore"]) != "712" || rec["name"] != "deal" {
		t.Errorf("record = %v, want new_creditscore 712 beside the name", rec)
	}
}
