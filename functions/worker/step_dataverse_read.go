package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
)

// Reader reads columns of one Dataverse record as the Web API returns it, annotations included;
// event.RecordValues gives them the form event Attributes take (lookups as {id, logicalName,
// name}). *dataverse.Client implements it.
type Reader interface {
	Read(ctx context.Context, entity, id string, columns []string) (map[string]json.RawMessage, error)
}

// DataverseClient is what the built-in Dataverse steps need of one environment.
type DataverseClient interface {
	Updater
	Reader
}

var _ DataverseClient = (*dataverse.Client)(nil)

// readDecl is a dataverse-read step:
//
//	{"name": "read-account", "type": "dataverse-read",
//	 "record": "$event.Attributes.parentaccountid",
//	 "select": ["name", "creditlimit", "_primarycontactid_value"]}
//
// Without record, the event's own record is read. With a reference to a lookup
// ({id, logicalName}, in the event or in an earlier step's result), the record it points at;
// with a reference to a plain id (or a literal GUID), the record of that id in the table
// entity names. select lists the columns, a lookup as _<lookup>_value. The record is kept
// under the step's name: $steps.read-account.name, $steps.read-account.primarycontactid.id.
type readDecl struct {
	Record json.RawMessage `json:"record"`
	Entity string          `json:"entity"`
	Select []string        `json:"select"`
}

type readStep struct {
	name    string
	record  *valueRef // nil: the event's own record
	entity  string    // the table of a plain id; for a lookup, the only table to read
	columns []string
	client  Reader
}

func newReadStep(decl StepDecl, env BuildEnv) (Step, error) {
	var d readDecl
	if err := json.Unmarshal(decl.Raw, &d); err != nil {
		return nil, err
	}
	s := &readStep{name: decl.Name}
	if len(d.Select) == 0 {
		return nil, errors.New("select: list the columns to read")
	}
	for _, c := range d.Select {
		col, err := env.Expand(c)
		if err != nil {
			return nil, err
		}
		if !event.IsLogicalName(col) {
			return nil, fmt.Errorf("select: %q is not a column logical name (select a lookup as _<name>_value)", c)
		}
		s.columns = append(s.columns, col)
	}
	if d.Entity != "" {
		table, err := env.Expand(d.Entity)
		if err != nil {
			return nil, err
		}
		if !event.IsLogicalName(table) {
			return nil, fmt.Errorf("entity: %q is not a table logical name", d.Entity)
		}
		s.entity = table
	}
	if len(d.Record) > 0 {
		ref, err := parseValue(d.Record, decl.Earlier)
		var skip *SkipError
		switch {
		case errors.As(err, &skip):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("record: %w", err)
		}
		if ref.source == "" {
			id, ok := ref.literal.(string)
			if !ok || !isGUID(strings.ToLower(id)) || s.entity == "" {
				return nil, errors.New("record: want $event.<path> or $steps.<step>.<path>, or a record id (a GUID) with entity")
			}
		}
		s.record = &ref
	} else if s.entity != "" {
		return nil, errors.New("entity: only with record; the event's own record is of the event's table")
	}
	if err := requireDataverse(env); err != nil {
		return nil, err
	}
	s.client = env.Dataverse
	return s, nil
}

func (s *readStep) Run(ctx context.Context, r *Run) error {
	entity, id, err := s.target(r)
	if err != nil {
		return err
	}
	ctx = dataverse.WithRequestIDs(ctx, dataverse.RequestIDs{IdempotencyKey: r.Event.EventID, CorrelationID: r.Event.CorrelationID})
	rec, err := s.client.Read(ctx, entity, id, s.columns)
	var apiErr *dataverse.Error
	switch {
	case errors.Is(err, dataverse.ErrRecordNotFound) && errors.As(err, &apiErr):
		// A 404, permanent by the classifier: the next try would find the same nothing.
		return fmt.Errorf("record %s(%s) not found: deleted after the event, or the reference names no record: %w", entity, strings.ToLower(id), apiErr)
	case errors.Is(err, dataverse.ErrInvalidInput):
		// An id that is not a GUID, a table that is not a name: alike on every attempt.
		return MarkPermanent(err)
	case err != nil:
		return err
	}
	values, err := event.RecordValues(rec)
	if err != nil {
		// The answer, not the request, is at fault; a later read may be whole.
		return fmt.Errorf("read %s(%s): %w", entity, strings.ToLower(id), err)
	}
	r.Keep(s.name, values)
	return nil
}

// target names the record to read for run r.
func (s *readStep) target(r *Run) (entity, id string, err error) {
	if s.record == nil {
		if r.Event.RecordID == "" {
			return "", "", fmt.Errorf("the event names no record: %w", ErrNothingToDo)
		}
		return r.Event.Entity, r.Event.RecordID, nil
	}
	v, ok := s.record.resolve(r)
	if !ok || v == nil {
		return "", "", fmt.Errorf("record %s is empty in this event: %w", s.ref(), ErrNothingToDo)
	}
	switch v := v.(type) {
	case string:
		if s.entity == "" {
			return "", "", MarkPermanent(fmt.Errorf("record %s is an id, not a lookup: name its table with entity", s.ref()))
		}
		return s.entity, v, nil
	case map[string]any:
		id, _ = walkString(v, "id")
		entity, _ = walkString(v, "logicalName")
		if s.entity != "" {
			if entity != "" && !strings.EqualFold(entity, s.entity) {
				// A polymorphic lookup (customerid, regardingobjectid) pointing elsewhere.
				return "", "", fmt.Errorf("record %s points at a %s, not a %s: %w", s.ref(), entity, s.entity, ErrNothingToDo)
			}
			entity = s.entity
		}
		if id == "" || entity == "" {
			return "", "", MarkPermanent(fmt.Errorf("record %s is not an entity reference {id, logicalName}", s.ref()))
		}
		return entity, id, nil
	}
	return "", "", MarkPermanent(fmt.Errorf("record %s is neither a record id nor an entity reference", s.ref()))
}

// ref names the record reference for error text: the reference as declared, never a value.
func (s *readStep) ref() string {
	if s.record.text != "" {
		return s.record.text
	}
	return "(a literal id)"
}
