package recovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

// errRecordGone reports a record that was deleted after its job failed.
var errRecordGone = errors.New("the record no longer exists")

// EventID is the EventId of the reconcile event for system job jobID: a name-based UUID,
// uuid.NewSHA1(event.EventIDNamespace, "recover\n" + the lower-case job id). Recovering the
// same job again gives the same id, so the queue's duplicate detection drops the copy.
func EventID(jobID string) string {
	return uuid.NewSHA1(uuid.MustParse(event.EventIDNamespace), []byte("recover\n"+strings.ToLower(jobID))).String()
}

// reconcileEvent builds the event for job: for a Delete the record's id alone (it cannot be
// read any more); otherwise the record as it is now.
func (r *Recoverer) reconcileEvent(ctx context.Context, job Job) (event.Event, error) {
	ev := event.Event{
		SchemaVersion: event.SchemaVersion,
		EventID:       EventID(job.ID),
		CorrelationID: job.CorrelationID,
		EventName:     event.EventNameFor(job.Entity, job.Message),
		Entity:        job.Entity,
		Message:       job.Message,
		RecordID:      job.RecordID,
		ChangedFields: []string{},
		TriggeredBy:   job.CreatedBy,
		Timestamp:     job.CreatedOn.UTC().Format(timeFormat),
		Source:        event.SourceRecover,
	}
	if ev.CorrelationID == "" {
		// Every event carries one; the EventId keeps the event the same on every run.
		ev.CorrelationID = ev.EventID
	}
	if job.CreatedOn.IsZero() {
		ev.Timestamp = r.now().UTC().Format(timeFormat)
	}
	if job.Message == "Delete" {
		return ev, nil
	}
	set, err := r.entitySet(ctx, job.Entity)
	if err != nil {
		return event.Event{}, err
	}
	var rec map[string]json.RawMessage
	read := dataverse.WithAnnotations(ctx, dataverse.AnnotationLookupLogicalName, dataverse.AnnotationFormattedValue)
	err = r.retry.Do(ctx, true, func() error { return r.api.GetRecord(read, set, job.RecordID, nil, &rec) })
	if isNotFound(err) {
		return event.Event{}, fmt.Errorf("re-read %s(%s): %w: %w", set, job.RecordID, errRecordGone, err)
	}
	if err != nil {
		return event.Event{}, fmt.Errorf("re-read %s(%s): %w", set, job.RecordID, err)
	}
	attrs, columns, err := attributes(rec)
	if err != nil {
		return event.Event{}, fmt.Errorf("re-read %s(%s): %w", set, job.RecordID, err)
	}
	ev.Attributes = attrs
	ev.ChangedFields = changedFields(job, columns)
	return ev, nil
}

// timeFormat is the canonical event's: RFC 3339 in UTC, fractional seconds only when not zero.
const timeFormat = "2006-01-02T15:04:05.999999999Z07:00"

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

// column is a column logical name as the canonical schema admits it.
var column = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,127}$`)

// recordLookup is a lookup in canonical Attributes, as the intake writes an EntityReference.
type recordLookup struct {
	ID          string  `json:"id"`
	LogicalName string  `json:"logicalName"`
	Name        *string `json:"name"`
}

// attributes turns a Web API record into canonical Attributes, as close to the intake's as a
// record read allows:
//   - a lookup, read as "_<column>_value" with its annotations, becomes <column>:
//     {"id", "logicalName", "name"} (name from the formatted value; null without it);
//   - other values are kept as the Web API wrote them: numbers with their exact text, choices
//     as integers, dates as RFC 3339 UTC (multi-select choices stay the "1,2" text the Web API
//     returns: without metadata they cannot be told from text);
//   - null values are left out, as an entity image leaves out columns without a value, and so
//     are annotations and @odata members.
//
// It also returns the names of the columns it kept.
func attributes(rec map[string]json.RawMessage) (map[string]json.RawMessage, []string, error) {
	out := make(map[string]json.RawMessage, len(rec))
	for key, raw := range rec {
		if strings.Contains(key, "@") || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		if inner, ok := strings.CutPrefix(key, "_"); ok {
			if name, ok := strings.CutSuffix(inner, "_value"); ok && column.MatchString(name) {
				ref, err := lookupValue(rec, key, raw)
				if err != nil {
					return nil, nil, fmt.Errorf("lookup %s: %w", name, err)
				}
				out[name] = ref
				continue
			}
		}
		if !column.MatchString(key) {
			continue
		}
		plain, err := reencode(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("column %s: %w", key, err)
		}
		out[key] = plain
	}
	columns := make([]string, 0, len(out))
	for k := range out {
		columns = append(columns, k)
	}
	slices.Sort(columns)
	if len(out) == 0 {
		out = nil
	}
	return out, columns, nil
}

func lookupValue(rec map[string]json.RawMessage, key string, raw json.RawMessage) (json.RawMessage, error) {
	var ref recordLookup
	if err := json.Unmarshal(raw, &ref.ID); err != nil {
		return nil, fmt.Errorf("not a record id: %w", err)
	}
	ref.ID = strings.ToLower(ref.ID)
	_ = json.Unmarshal(rec[key+"@"+dataverse.AnnotationLookupLogicalName], &ref.LogicalName)
	var name string
	if json.Unmarshal(rec[key+"@"+dataverse.AnnotationFormattedValue], &name) == nil {
		ref.Name = &name
	}
	return encode(ref)
}

// reencode writes a value read from the Web API the way the intake writes values: compact,
// numbers with their exact text, and without HTML escaping ("&" stays "&").
func reencode(raw json.RawMessage) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return encode(v)
}

func encode(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// platformStamps are the columns Dataverse writes on every save; like the intake, recovery
// never names them as changed.
var platformStamps = []string{
	"modifiedon", "modifiedby", "modifiedonbehalfby", "createdon", "createdby", "createdonbehalfby",
	"timezoneruleversionnumber", "versionnumber", "overriddencreatedon", "importsequencenumber",
}

// changedFields says which columns may have changed; what did is lost with the post. For an
// Update they are the step's filtering attributes, since one of them must have changed for the
// step to fire (any column, when the step has none); for a Create every column the record
// holds. So a route that waits for a column to change runs for the recovered event, and decides
// on the record's current values as a reconcile should.
func changedFields(job Job, columns []string) []string {
	switch job.Message {
	case "Update":
		if len(job.Step.FilteringAttributes) > 0 {
			changed := slices.Clone(job.Step.FilteringAttributes)
			slices.Sort(changed)
			return slices.Compact(changed)
		}
	case "Create":
	default:
		return []string{}
	}
	changed := []string{}
	for _, c := range columns {
		if slices.Contains(platformStamps, c) || c == job.Entity+"id" || c == "activityid" {
			continue
		}
		changed = append(changed, c)
	}
	return changed
}
