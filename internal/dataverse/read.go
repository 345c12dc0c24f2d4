package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/event"
)

// ErrRecordNotFound reports that the record Read asked for does not exist (a 404 for the
// record, not for its table). It wraps the *Error Dataverse answered.
var ErrRecordNotFound = errors.New("dataverse: record not found")

// Read reads columns of one record of a table named by its logical name:
// GET <set>(<id>)?$select=<columns>, asking for the annotations event.RecordValues reads (the
// table a lookup points at, formatted values). It returns the record as the Web API sent it,
// every member as raw JSON, annotations and the primary key (always returned) included: what a
// record means as event Attributes is internal/event's to say (event.RecordValues).
//
// A record that does not exist is an error wrapping ErrRecordNotFound and the 404 *Error.
func (c *Client) Read(ctx context.Context, entity, id string, columns []string) (map[string]json.RawMessage, error) {
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
		// Checking the shape keeps caller input from reshaping the query.
		if !event.IsLogicalName(col) {
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
	req.Header.Set("Prefer", `odata.include-annotations="`+strings.Join(event.RecordAnnotations(), ",")+`"`)
	body, err := c.do(req)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil, fmt.Errorf("dataverse read %s: %w: %w", where, ErrRecordNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dataverse read %s: %w", where, err)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(body, &rec); err != nil || rec == nil {
		return nil, fmt.Errorf("dataverse read %s: not a record: %w", where, ErrInvalidResponse)
	}
	return rec, nil
}
