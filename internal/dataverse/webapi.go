package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// Generic Web API operations. They go through the same token cache, headers and response
// handling as Update, so every caller gets one policy. A non-2xx answer is an *Error (test a
// missing record with errors.As and Status == 404); arguments that cannot form a request wrap
// ErrInvalidInput and send nothing.

// entitySetName is the shape of an entity set name (accounts, sdkmessageprocessingsteps,
// new_widgets). Checking it keeps caller input from reshaping the URL.
var entitySetName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// resourcePath is a relative Web API path: segments such as accounts,
// accounts(<id>)/contact_customer_accounts or EntityDefinitions(LogicalName='account'), with no
// query, fragment, spaces or dot segments.
var resourcePath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*(\([A-Za-z0-9_='\-,.{}]*\))?(/[A-Za-z_][A-Za-z0-9_.]*(\([A-Za-z0-9_='\-,.{}]*\))?)*$`)

// queryOption is the shape of a query option name: $filter, $select, or a parameter alias @p1.
var queryOption = regexp.MustCompile(`^[$@]?[A-Za-z][A-Za-z0-9_.]*$`)

// Get reads a collection, GET <path>?<query> (path is relative to /api/data/v9.2/, e.g.
// "sdkmessages" or "serviceendpoints(<id>)/serviceendpoint_sdkmessageprocessingstep"), and
// decodes the records of its "value" array into out, which must point to a slice. It follows
// @odata.nextLink until the last page, so out holds every record; bound the result with $top
// when only a few are wanted. Query values are sent as given: quote strings the OData way,
// e.g. "name eq 'Update'" (double any ' inside, see ODataString).
func (c *Client) Get(ctx context.Context, path string, query url.Values, out any) error {
	target, err := c.resourceURL(path, query)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", path, err)
	}
	if !isPointer(out) {
		return fmt.Errorf("dataverse get %s: out must be a non-nil pointer to a slice: %w", path, ErrInvalidInput)
	}
	var records []json.RawMessage
	for target != "" {
		req, err := c.newRequest(ctx, http.MethodGet, target, nil)
		if err != nil {
			return fmt.Errorf("dataverse get %s: %w", path, err)
		}
		body, err := c.do(req)
		if err != nil {
			return fmt.Errorf("dataverse get %s: %w", path, err)
		}
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(body, &page); err != nil || page.Value == nil {
			return fmt.Errorf("dataverse get %s: not an OData collection: %w", path, ErrInvalidResponse)
		}
		records = append(records, page.Value...)
		target = page.NextLink
		// The next link carries our token; it must stay on this environment's Web API.
		if target != "" && !strings.HasPrefix(target, c.base+apiPath) {
			return fmt.Errorf("dataverse get %s: next link leaves %s: %w", path, c.base, ErrInvalidResponse)
		}
	}
	all, err := json.Marshal(records)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", path, err)
	}
	if err := json.Unmarshal(all, out); err != nil {
		return fmt.Errorf("dataverse get %s: decode records: %w: %w", path, ErrInvalidResponse, err)
	}
	return nil
}

// GetRecord reads one record, GET <entitySet>(<id>)?<query>, into out (a pointer to a struct
// or a map). A record that does not exist is an *Error with Status 404.
func (c *Client) GetRecord(ctx context.Context, entitySet, id string, query url.Values, out any) error {
	path, err := recordPath(entitySet, id)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", entitySet, err)
	}
	target, err := c.resourceURL(path, query)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", path, err)
	}
	if !isPointer(out) {
		return fmt.Errorf("dataverse get %s: out must be a non-nil pointer: %w", path, ErrInvalidInput)
	}
	req, err := c.newRequest(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", path, err)
	}
	body, err := c.do(req)
	if err != nil {
		return fmt.Errorf("dataverse get %s: %w", path, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("dataverse get %s: %w: %w", path, ErrInvalidResponse, err)
	}
	return nil
}

// Create adds a record, POST <entitySet>, and returns its id from the OData-EntityId header.
// body is JSON-encoded: columns in Web API formats, lookups as "<navigation>@odata.bind":
// "/<set>(<id>)" (navigation property names are lower case).
func (c *Client) Create(ctx context.Context, entitySet string, body any) (string, error) {
	if !entitySetName.MatchString(entitySet) {
		return "", fmt.Errorf("dataverse create: %q is not an entity set name: %w", entitySet, ErrInvalidInput)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("dataverse create %s: encode body: %w: %w", entitySet, ErrInvalidInput, err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, c.base+apiPath+entitySet, payload)
	if err != nil {
		return "", fmt.Errorf("dataverse create %s: %w", entitySet, err)
	}
	header, _, err := c.doResponse(req)
	if err != nil {
		return "", fmt.Errorf("dataverse create %s: %w", entitySet, err)
	}
	id, ok := idFromEntityID(header.Get("OData-EntityId"))
	if !ok {
		return "", fmt.Errorf("dataverse create %s: no record id in OData-EntityId %q: %w", entitySet, header.Get("OData-EntityId"), ErrInvalidResponse)
	}
	return id, nil
}

// UpdateRecord sets columns on an existing record, PATCH <entitySet>(<id>) with If-Match: *,
// so a record that is gone yields a 404 *Error instead of being created again. Unlike Update
// it takes the entity set name directly and any JSON-encodable body, for callers that already
// know the set (system tables such as sdkmessageprocessingsteps).
func (c *Client) UpdateRecord(ctx context.Context, entitySet, id string, body any) error {
	path, err := recordPath(entitySet, id)
	if err != nil {
		return fmt.Errorf("dataverse update %s: %w", entitySet, err)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("dataverse update %s: encode body: %w: %w", path, ErrInvalidInput, err)
	}
	req, err := c.newRequest(ctx, http.MethodPatch, c.base+apiPath+path, payload)
	if err != nil {
		return fmt.Errorf("dataverse update %s: %w", path, err)
	}
	req.Header.Set("If-Match", "*")
	if _, err := c.do(req); err != nil {
		return fmt.Errorf("dataverse update %s: %w", path, err)
	}
	return nil
}

// Delete removes a record, DELETE <entitySet>(<id>). A record already gone is an *Error with
// Status 404; callers that want "absent either way" test for it.
func (c *Client) Delete(ctx context.Context, entitySet, id string) error {
	path, err := recordPath(entitySet, id)
	if err != nil {
		return fmt.Errorf("dataverse delete %s: %w", entitySet, err)
	}
	req, err := c.newRequest(ctx, http.MethodDelete, c.base+apiPath+path, nil)
	if err != nil {
		return fmt.Errorf("dataverse delete %s: %w", path, err)
	}
	if _, err := c.do(req); err != nil {
		return fmt.Errorf("dataverse delete %s: %w", path, err)
	}
	return nil
}

// ODataString quotes s as an OData string literal for $filter, doubling each single quote:
//
//	ODataString("O'Brien") == "'O''Brien'"
func ODataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// resourceURL joins a checked relative path and query onto the Web API root.
func (c *Client) resourceURL(path string, query url.Values) (string, error) {
	if !resourcePath.MatchString(path) {
		return "", fmt.Errorf("%q is not a relative Web API path: %w", path, ErrInvalidInput)
	}
	q, err := encodeQuery(query)
	if err != nil {
		return "", err
	}
	if q != "" {
		return c.base + apiPath + path + "?" + q, nil
	}
	return c.base + apiPath + path, nil
}

// encodeQuery writes OData query options with spaces as %20 and the $ of option names kept:
// url.Values.Encode would send spaces as '+', which OData (RFC 3986) reads as a plus sign.
func encodeQuery(query url.Values) (string, error) {
	keys := make([]string, 0, len(query))
	for k := range query {
		if !queryOption.MatchString(k) {
			return "", fmt.Errorf("%q is not a query option name: %w", k, ErrInvalidInput)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range query[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	return b.String(), nil
}

func recordPath(entitySet, id string) (string, error) {
	if !entitySetName.MatchString(entitySet) {
		return "", fmt.Errorf("%q is not an entity set name: %w", entitySet, ErrInvalidInput)
	}
	recordID, err := uuid.Parse(id)
	if err != nil {
		// The id is not quoted: it may come from an event, and error text ends up in logs.
		return "", fmt.Errorf("%s record id is not a GUID: %w", entitySet, ErrInvalidInput)
	}
	return entitySet + "(" + recordID.String() + ")", nil
}

// idFromEntityID takes the record id out of an OData-EntityId header,
// https://org.crm.dynamics.com/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001).
func idFromEntityID(h string) (string, bool) {
	start, end := strings.LastIndexByte(h, '('), strings.LastIndexByte(h, ')')
	if start < 0 || end != len(h)-1 {
		return "", false
	}
	id, err := uuid.Parse(h[start+1 : end])
	if err != nil {
		return "", false
	}
	return id.String(), true
}

// isPointer checks out before a round trip: json.Unmarshal would refuse a nil or non-pointer
// target only after the request was sent.
func isPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && !rv.IsNil()
}
