package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Web API annotations RecordValues reads. A read must ask for them (the Prefer header's
// odata.include-annotations): the table a lookup points at, and display text, which for a lookup
// is the primary name of the record it points at.
const (
	AnnotationLookupTable    = "Microsoft.Dynamics.CRM.lookuplogicalname"
	AnnotationFormattedValue = "OData.Community.Display.V1.FormattedValue"
)

// RecordAnnotations are the annotations a Web API read must ask for so that RecordValues can
// give lookups their table and name.
func RecordAnnotations() []string {
	return []string{AnnotationLookupTable, AnnotationFormattedValue}
}

// RecordValues turns one record as the Web API returns it (every member as raw JSON,
// annotations included) into plain values in the form canonical Attributes take:
//
//   - a lookup, read as its value property _<lookup>_value, becomes <lookup>:
//     {"id", "logicalName", "name"}: id lower case, logicalName from the lookuplogicalname
//     annotation (left out when the read did not return it), name from the formatted value (null
//     without one, as for an EntityReference without a Name); an empty lookup is null;
//   - other values stay as the Web API wrote them: numbers as json.Number with their exact
//     text, choices as integers, dates as ISO 8601 UTC strings (multi-select choices stay the
//     "1,2" text the Web API returns: without metadata they cannot be told from text);
//   - a null value stays null: the column was read and holds nothing;
//   - annotations (formatted values, @odata.etag, @odata.context) and members that are not
//     column logical names are dropped.
//
// A dataverse-read step keeps these values whole; Reread leaves out the nulls, as an entity
// image does.
func RecordValues(rec map[string]json.RawMessage) (map[string]any, error) {
	out := make(map[string]any, len(rec))
	for key, raw := range rec {
		if strings.Contains(key, "@") {
			continue
		}
		if name, ok := lookupProperty(key); ok {
			ref, err := recordLookup(rec, key, raw)
			if err != nil {
				return nil, fmt.Errorf("lookup %s: %w", name, err)
			}
			out[name] = ref
			continue
		}
		if !IsLogicalName(key) {
			continue
		}
		v, err := decodeValue(raw)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", key, err)
		}
		out[key] = v
	}
	return out, nil
}

// lookupProperty reads a lookup's value property, _<lookup>_value, and returns the lookup's name.
func lookupProperty(key string) (string, bool) {
	inner, ok := strings.CutPrefix(key, "_")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(inner, "_value")
	if !ok || !IsLogicalName(name) {
		return "", false
	}
	return name, true
}

// recordLookup is a lookup's plain form; nil for an empty lookup.
func recordLookup(rec map[string]json.RawMessage, key string, raw json.RawMessage) (any, error) {
	var id *string
	if err := json.Unmarshal(raw, &id); err != nil {
		return nil, fmt.Errorf("not a record id: %w", err)
	}
	if id == nil {
		return nil, nil
	}
	ref := map[string]any{"id": strings.ToLower(*id), "name": nil}
	var table string
	if json.Unmarshal(rec[key+"@"+AnnotationLookupTable], &table) == nil && table != "" {
		ref["logicalName"] = table
	}
	var name string
	if json.Unmarshal(rec[key+"@"+AnnotationFormattedValue], &name) == nil {
		ref["name"] = name
	}
	return ref, nil
}

func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Reread is what is known of an operation whose webhook post Dataverse gave up on, and the
// record as it reads now.
type Reread struct {
	// JobID is the failed system job (asyncoperation) that would have posted; it names the event.
	JobID         string
	CorrelationID string // the operation's; the EventId when empty
	Entity        string
	Message       string
	RecordID      string
	TriggeredBy   string    // the systemuser the job ran for
	At            time.Time // when the operation happened
	// FilteringAttributes are the step's: for an Update one of them must have changed for it to
	// fire.
	FilteringAttributes []string
	// Record is the record as the Web API returns it (see RecordValues); nil for a Delete,
	// whose record cannot be read any more.
	Record map[string]json.RawMessage
}

// RereadEventID is the EventId of the event re-read for system job jobID: a name-based UUID,
// uuid.NewSHA1(EventIDNamespace, "recover\n" + the lower-case job id). Recovering the same job
// again gives the same id, so the queue's duplicate detection drops the copy.
func RereadEventID(jobID string) string {
	return mintEventID("recover", strings.ToLower(jobID))
}

// FromReread builds the canonical event of a re-read record, as close to the event the intake
// would have published as a record read allows (Source SourceRecover):
//   - Attributes are RecordValues without nulls, as an entity image leaves out columns without
//     a value;
//   - ChangedFields say which columns may have changed, since what did is lost with the post:
//     for an Update the step's filtering attributes (one of them must have changed for the step
//     to fire), or every column the record holds when it has none; for a Create every column
//     the record holds. Both leave out what a posted Create leaves out: platform stamps, the
//     primary key, an unset process. Other messages name none.
//
// A route that waits for a column to change runs for the recovered event, and decides on the
// record's current values, as a reconcile should.
func FromReread(r Reread) (Event, error) {
	ev := Event{
		SchemaVersion: SchemaVersion,
		EventID:       RereadEventID(r.JobID),
		CorrelationID: r.CorrelationID,
		EventName:     EventNameFor(r.Entity, r.Message),
		Entity:        r.Entity,
		Message:       r.Message,
		RecordID:      strings.ToLower(r.RecordID),
		ChangedFields: []string{},
		TriggeredBy:   r.TriggeredBy,
		Timestamp:     FormatTime(r.At),
		Source:        SourceRecover,
	}
	if ev.CorrelationID == "" {
		// Every event carries one; the EventId keeps the event the same on every run.
		ev.CorrelationID = ev.EventID
	}
	if r.Record == nil {
		return ev, nil
	}
	values, err := RecordValues(r.Record)
	if err != nil {
		return Event{}, err
	}
	held := make(map[string]any, len(values))
	var columns []string
	for k, v := range values {
		if v == nil {
			continue
		}
		held[k] = v
		columns = append(columns, k)
	}
	if ev.Attributes, err = encodeAttributes(held); err != nil {
		return Event{}, err
	}
	switch {
	case r.Message == "Update" && len(r.FilteringAttributes) > 0:
		ev.ChangedFields = slices.Clone(r.FilteringAttributes)
	case r.Message == "Create" || r.Message == "Update":
		for _, c := range columns {
			if !isChange(r.Message, r.Entity, ev.RecordID, c, values[c]) {
				continue
			}
			ev.ChangedFields = append(ev.ChangedFields, c)
		}
	}
	slices.Sort(ev.ChangedFields)
	ev.ChangedFields = slices.Compact(ev.ChangedFields)
	return ev, nil
}
