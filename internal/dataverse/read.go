package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// ErrRecordNotFound reports that the record Read asked for does not exist (a 404 for the
// record, not for its table). It wraps the *Error Dataverse answered.
var ErrRecordNotFound = errors.New("dataverse: record not found")

// Annotations Read asks for. Dataverse sends them only when the request's Prefer header names
// them: the table a lookup points at, and display text (a lookup's formatted value is the
// primary name of the record it points at).
const (
	annotationLookupTable = "Microsoft.Dynamics.CRM.lookuplogicalname"
	annotationFormatted   = "OData.Community.Display.V1.FormattedValue"
)

// selectColumn is the shape of a column in a Read: a logical name (name, creditlimit) or a
// lookup's value property (_parentaccountid_value). Checking it keeps caller input from
// reshaping the query.
var selectColumn = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,127}$`)

// lookupValue matches a lookup's value property and captures the lookup's name.
var lookupValue = regexp.MustCompile(`^_([a-z0-9_]+)_value$`)

// Read reads columns of one record of a table named by its logical name:
// GET <set>(<id>)?$select=<columns>, asking for the lookup table and formatted value
// annotations. The record comes back as plain JSON, in the form the canonical event gives
// Attributes:
//
//   - numbers as json.Number, so decimals and money keep their exact text; choices are integers
//     and dates ISO 8601 UTC strings already in the Web API;
//   - a lookup, selected by its value property _<lookup>_value, under the lookup's name as
//     {"id", "logicalName", "name"}: id lower case, logicalName from the lookuplogicalname
//     annotation (left out when Dataverse did not send it), name from the formatted value
//     (null when absent); an empty lookup is null;
//   - every annotation (formatted values of other columns, @odata.etag, @odata.context) dropped;
//   - the primary key column, which the Web API always returns, kept.
//
// A record that does not exist is an error wrapping ErrRecordNotFound and the 404 *Error.
func (c *Client) Read(ctx context.Context, entity, id string, columns []string) (map[string]any, error) {
	recordID, err := uuid.Parse(id)
	if err != nil {
		// The id is not quoted: it may come from an event, and error text ends up in logs.
		return nil, fmt.Errorf("dataverse read %s: record id is not a GUID: %w", entity, ErrInvalidInput)
	}
	where := entity + "(" + recordID.String() + ")"
	if len(columns) == 0 {
		return nil, fmt.Errorf("dataverse read %s: no columns to select: %w", where, ErrInvalidInput)
	}
	for _, col := range columns {
		if !selectColumn.MatchString(col) {
			return nil, fmt.Errorf("dataverse read %s: %q is not a column logical name: %w", where, col, ErrInvalidInput)
		}
	}
	set, err := c.EntitySetName(ctx, entity)
	if err != nil {
		return nil, fmt.Errorf("dataverse read %s: %w", where, err)
	}
	target, err := c.resourceURL(set+"("+recordID.String()+")", url.Values{"$select": {strings.Join(columns, ",")}})
	if err != nil {
		return nil, fmt.Errorf("dataverse read %s: %w", where, err)
	}
	req, err := c.newRequest(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("dataverse read %s: %w", where, err)
	}
	req.Header.Set("Prefer", `odata.include-annotations="`+annotationLookupTable+","+annotationFormatted+`"`)
	body, err := c.do(req)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil, fmt.Errorf("dataverse read %s: %w: %w", where, ErrRecordNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dataverse read %s: %w", where, err)
	}
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, fmt.Errorf("dataverse read %s: not a record: %w", where, ErrInvalidResponse)
	}
	return plainRecord(raw), nil
}

// plainRecord turns a record as the Web API sends it into the plain form Read documents.
func plainRecord(raw map[string]any) map[string]any {
	out := make(map[string]any, len(raw))
	for k, v := range raw {
		if strings.Contains(k, "@") {
			continue
		}
		m := lookupValue.FindStringSubmatch(k)
		if m == nil {
			out[k] = v
			continue
		}
		id, ok := v.(string)
		if !ok {
			out[m[1]] = nil
			continue
		}
		ref := map[string]any{"id": strings.ToLower(id), "name": nil}
		if table, ok := raw[k+"@"+annotationLookupTable].(string); ok && table != "" {
			ref["logicalName"] = table
		}
		if name, ok := raw[k+"@"+annotationFormatted].(string); ok {
			ref["name"] = name
		}
		out[m[1]] = ref
	}
	return out
}
