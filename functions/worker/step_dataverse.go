package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
)

// Updater writes columns onto an existing Dataverse record. *dataverse.Client implements it.
type Updater interface {
	Update(ctx context.Context, entity, id string, columns map[string]any) error
}

var _ Updater = (*dataverse.Client)(nil)

// updateDecl is a dataverse-update step:
//
//	{"name": "write-score", "type": "dataverse-update",
//	 "record": {"lookup": "parentaccountid"},
//	 "set": {"${DVRELAY_SCORE_COLUMN:-new_creditscore}": "$steps.credit-score.score"}}
//
// Without record, the event's own record is updated; with a lookup, the record that lookup
// attribute of the event points at. Column names may use settings; values are literals,
// $event.<path> or $steps.<step>.<path>.
type updateDecl struct {
	Record *struct {
		Lookup string `json:"lookup"`
	} `json:"record"`
	Set map[string]json.RawMessage `json:"set"`
}

// navigationBind is a lookup's navigation property binding, <property>@odata.bind: a navigation
// property is the lookup's schema name for custom lookups (new_AccountId) and the Web API matches
// it case-sensitively, so upper case is allowed there.
var navigationBind = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}@odata\.bind$`)

// isColumnName reports a column a dataverse-update step may set: a column logical name, or a
// lookup's navigation property binding.
func isColumnName(s string) bool { return event.IsLogicalName(s) || navigationBind.MatchString(s) }

type updateStep struct {
	lookup  string
	columns map[string]valueRef
	client  Updater
}

func newUpdateStep(decl StepDecl, env BuildEnv) (Step, error) {
	var d updateDecl
	if err := json.Unmarshal(decl.Raw, &d); err != nil {
		return nil, err
	}
	s := &updateStep{columns: make(map[string]valueRef, len(d.Set)), client: env.Dataverse}
	if d.Record != nil {
		s.lookup = d.Record.Lookup
	}
	for _, key := range sortedKeys(d.Set) {
		col, err := env.Expand(key)
		if err != nil {
			return nil, err
		}
		if !isColumnName(col) {
			return nil, &FieldError{Path: []string{"set", key}, AtKey: true,
				Err: fmt.Errorf("%q is not a Dataverse column logical name", col)}
		}
		v, err := parseValue(d.Set[key], decl.Earlier)
		var skip *SkipError
		switch {
		case errors.As(err, &skip):
			return nil, err
		case err != nil:
			return nil, &FieldError{Path: []string{"set", key}, Err: err}
		}
		s.columns[col] = v
	}
	if err := requireDataverse(env); err != nil {
		return nil, err
	}
	return s, nil
}

// requireDataverse is the one rule for every Dataverse step: without an environment
// (DATAVERSE_URL unset) the step is skipped, with a warning at start, rather than failing.
func requireDataverse(env BuildEnv) error {
	if env.Dataverse == nil {
		return &SkipError{Reason: "no Dataverse environment is configured (DATAVERSE_URL is not set)"}
	}
	return nil
}

// WrittenColumns lists the columns this step writes, for the loop guard. A lookup set through
// <navigation property>@odata.bind comes back in the echo's ChangedFields as its column, which
// is the navigation property's name in lower case (the guard compares case-insensitively).
func (s *updateStep) WrittenColumns() []string {
	cols := sortedKeys(s.columns)
	for i, c := range cols {
		cols[i] = strings.TrimSuffix(c, "@odata.bind")
	}
	return cols
}

// record is the table and id the step writes to for this event: the event's own record, or
// the one its lookup names.
func (s *updateStep) record(r *Run) (entity, id string, err error) {
	if s.lookup == "" {
		if r.Event.RecordID == "" {
			// An unbound message (a custom API with no Target) has no record of its own.
			return "", "", fmt.Errorf("the event names no record: %w", ErrNothingToDo)
		}
		return r.Event.Entity, r.Event.RecordID, nil
	}
	ref, ok := r.EventValue([]string{"Attributes", s.lookup})
	if !ok {
		return "", "", fmt.Errorf("lookup %s is empty in this event: %w", s.lookup, ErrNothingToDo)
	}
	entity, _ = walkString(ref, "logicalName")
	id, _ = walkString(ref, "id")
	if entity == "" || id == "" {
		return "", "", MarkPermanent(fmt.Errorf("lookup %s: not an entity reference {id, logicalName}", s.lookup))
	}
	return entity, id, nil
}

func (s *updateStep) Run(ctx context.Context, r *Run) error {
	entity, id, err := s.record(r)
	if err != nil {
		return err
	}
	cols := make(map[string]any, len(s.columns))
	for col, ref := range s.columns {
		v, ok := ref.resolve(r)
		switch {
		case ok:
			cols[col] = v
		case ref.source == "steps":
			return MarkPermanent(fmt.Errorf("%w: %s is missing", ErrInvalidResponse, ref.text))
		}
		// An absent $event value is an unchanged column of an Update: leave it alone.
	}
	if len(cols) == 0 {
		return fmt.Errorf("no values to write: %w", ErrNothingToDo)
	}
	ids := dataverse.RequestIDs{IdempotencyKey: r.Event.EventID, CorrelationID: r.Event.CorrelationID}
	if sc, ok := tracecontext.FromContext(ctx); ok {
		ids.Traceparent = sc.String()
	}
	ctx = dataverse.WithRequestIDs(ctx, ids)
	err = s.client.Update(ctx, entity, id, cols)
	var refused *dataverse.Error
	if errors.As(err, &refused) {
		// Dataverse's error.message says why; it can quote column values, so it goes to the
		// dead letter only (dataverse.Error's text leaves it out).
		err = WithAnswer(err, []byte(refused.Message))
	}
	if errors.Is(err, dataverse.ErrInvalidInput) {
		// A lookup naming no addressable record fails alike on every attempt.
		return MarkPermanent(err)
	}
	return err
}

func walkString(v any, key string) (string, bool) {
	s, ok := lookupKey(v, key).(string)
	return s, ok
}
