package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

// errRecordGone reports a record that was deleted after its job failed.
var errRecordGone = errors.New("the record no longer exists")

// reconcileEvent builds the event for job: for a Delete the record's id alone (it cannot be
// read any more); otherwise the record as it is now. What the event says is event.FromReread's.
func (r *Recoverer) reconcileEvent(ctx context.Context, job Job) (event.Event, error) {
	reread := event.Reread{
		JobID:               job.ID,
		CorrelationID:       job.CorrelationID,
		Entity:              job.Entity,
		Message:             job.Message,
		RecordID:            job.RecordID,
		TriggeredBy:         job.CreatedBy,
		At:                  job.CreatedOn,
		FilteringAttributes: job.Step.FilteringAttributes,
	}
	if job.CreatedOn.IsZero() {
		reread.At = r.now()
	}
	if job.Message != "Delete" {
		set, err := r.entitySet(ctx, job.Entity)
		if err != nil {
			return event.Event{}, err
		}
		read := dataverse.WithAnnotations(ctx, event.RecordAnnotations()...)
		err = r.retry.Do(ctx, true, func() error { return r.api.GetRecord(read, set, job.RecordID, nil, &reread.Record) })
		if isNotFound(err) {
			return event.Event{}, fmt.Errorf("re-read %s(%s): %w: %w", set, job.RecordID, errRecordGone, err)
		}
		if err != nil {
			return event.Event{}, fmt.Errorf("re-read %s(%s): %w", set, job.RecordID, err)
		}
		if reread.Record == nil {
			reread.Record = map[string]json.RawMessage{}
		}
	}
	ev, err := event.FromReread(reread)
	if err != nil {
		return event.Event{}, fmt.Errorf("re-read %s(%s): %w", job.Entity, job.RecordID, err)
	}
	return ev, nil
}

func (r *Recoverer) entitySet(ctx context.Context, entity string) (string, error) {
	var set string
	err := r.retry.Do(ctx, true, func() error {
		var err error
		set, err = r.api.EntitySetName(ctx, entity)
		return err
	})
	if isNotFound(err) {
		return "", fmt.Errorf("table %s is not in this environment: %w", entity, err)
	}
	return set, err
}
