package dataverse

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/retry"
)

// Error is a non-2xx answer from the Web API. Code is Dataverse's own (often a hex string such as
// 0x80040217, and often unrelated to Status); RetryAfter is set when the answer carried a
// Retry-After header (429 service protection limits, 503).
//
// Error() deliberately leaves Message out: Dataverse validation messages can quote column
// values, and error strings end up in logs and dead-letter descriptions.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("dataverse: %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("dataverse: %d %s (code %s)", e.Status, http.StatusText(e.Status), e.Code)
}

// HTTPStatus reports the status so that a retry classifier can read it without importing this package.
func (e *Error) HTTPStatus() int { return e.Status }

// RetryAfterDelay reports how long the server asked to wait; zero when it did not say.
func (e *Error) RetryAfterDelay() time.Duration { return e.RetryAfter }

// maxBody bounds how much of an answer is read. Error bodies and metadata are small; a page of
// records (Get follows @odata.nextLink, Dataverse pages at 5,000 rows) with a $select fits well
// within it, and a larger answer fails instead of being read into memory.
const maxBody = 8 << 20

// errorFromResponse builds an *Error from a non-2xx response. A body that is not the OData error
// shape still yields an *Error carrying the status.
func errorFromResponse(resp *http.Response, body []byte, now time.Time) *Error {
	e := &Error{
		Status:     resp.StatusCode,
		RetryAfter: retry.ParseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	var odata struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &odata) == nil {
		e.Code = odata.Error.Code
		e.Message = odata.Error.Message
	}
	return e
}
