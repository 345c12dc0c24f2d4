package registration

import (
	"context"
	"net/url"
	"time"

	"github.com/dvrelay/dvrelay/internal/dataverse"
)

// retrying is a WebAPI that tries a request again when the shared classifier calls the answer
// transient (dataverse.Retry): any transient answer for requests that are safe to repeat, and for
// a create only the answers that show it was not carried out (401, 408, 429), since a create that
// timed out at a gateway may have happened (a rerun finds it by its name instead).
type retrying struct {
	api   WebAPI
	retry dataverse.Retry
}

// statusError is what the Web API client's errors tell about the answer (*dataverse.Error).
type statusError interface {
	HTTPStatus() int
	RetryAfterDelay() time.Duration
}

func newRetrying(api WebAPI, opts Options) *retrying {
	return &retrying{api: api, retry: dataverse.Retry{
		MaxAttempts: opts.MaxAttempts, MaxWait: opts.MaxWait, Sleep: opts.Sleep, OnWait: opts.OnWait,
	}}
}

func (r *retrying) Get(ctx context.Context, path string, query url.Values, out any) error {
	return r.retry.Do(ctx, true, func() error { return r.api.Get(ctx, path, query, out) })
}

func (r *retrying) GetRecord(ctx context.Context, entitySet, id string, query url.Values, out any) error {
	return r.retry.Do(ctx, true, func() error { return r.api.GetRecord(ctx, entitySet, id, query, out) })
}

func (r *retrying) Create(ctx context.Context, entitySet string, body any) (string, error) {
	var id string
	err := r.retry.Do(ctx, false, func() error {
		var err error
		id, err = r.api.Create(ctx, entitySet, body)
		return err
	})
	return id, err
}

func (r *retrying) UpdateRecord(ctx context.Context, entitySet, id string, body any) error {
	return r.retry.Do(ctx, true, func() error { return r.api.UpdateRecord(ctx, entitySet, id, body) })
}

func (r *retrying) Delete(ctx context.Context, entitySet, id string) error {
	return r.retry.Do(ctx, true, func() error { return r.api.Delete(ctx, entitySet, id) })
}
