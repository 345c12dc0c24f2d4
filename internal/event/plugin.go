package event

import (
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// parsePlugin validates the compact plugin event and normalizes it (EventId: see Parse).
//
// Entity and Message come from the optional members of the same names; without them they are
// derived from EventName where that is unambiguous (see entityAndMessageFromEventName).
// CorrelationId is the optional member, else the EventId, until the intake overrides it.
func (p *Parser) parsePlugin(top map[string]any) (Event, error) {
	var problems problemList
	validate(p.plugin, envelope(top, []string{"ChangedFields"}), &problems)
	(&checker{problems: &problems}).plugin(top)

	in := struct {
		EventName, RecordID, TriggeredBy, Timestamp, Entity, Message, CorrelationID string
		ChangedFields                                                               []string
	}{
		EventName:     str(top, "EventName"),
		RecordID:      str(top, "RecordId"),
		TriggeredBy:   str(top, "TriggeredBy"),
		Timestamp:     str(top, "Timestamp"),
		Entity:        str(top, "Entity"),
		Message:       str(top, "Message"),
		CorrelationID: str(top, "CorrelationId"),
	}
	for _, field := range list(top, "ChangedFields") {
		if name, ok := field.(string); ok {
			in.ChangedFields = append(in.ChangedFields, name)
		}
	}

	var ts time.Time
	if in.Timestamp != "" {
		var err error
		if ts, err = parseTimestamp(in.Timestamp); err != nil {
			problems.add(FieldProblem{Pointer: "/Timestamp", Detail: "is not a valid RFC 3339 date-time"})
		} else if y := ts.UTC().Year(); y < 0 || y > 9999 {
			// 9999-12-31T23:59:59-01:00 is year 10000 in UTC, which RFC 3339 cannot write.
			problems.add(FieldProblem{Pointer: "/Timestamp", Detail: "is outside years 0000-9999 in UTC"})
		}
	}
	if !problems.empty() {
		return Event{}, newValidationError(KindPluginEvent, &problems)
	}

	changed := append([]string{}, in.ChangedFields...)
	slices.Sort(changed)
	changed = slices.Compact(changed)

	entity, message := in.Entity, in.Message
	if entity == "" && message == "" {
		entity, message = entityAndMessageFromEventName(in.EventName)
	}
	triggeredBy := in.TriggeredBy
	if uuid.Validate(triggeredBy) == nil && len(triggeredBy) == len(nilGUID) {
		triggeredBy = strings.ToLower(triggeredBy)
	}

	ev := Event{
		SchemaVersion: SchemaVersion,
		EventName:     in.EventName,
		Entity:        entity,
		Message:       message,
		RecordID:      strings.ToLower(in.RecordID),
		ChangedFields: changed,
		TriggeredBy:   triggeredBy,
		Timestamp:     FormatTime(ts),
		Source:        SourcePlugin,
	}
	ev.EventID = p.eventID("plugin", ev.EventName, ev.RecordID, ev.Timestamp, ev.TriggeredBy, strings.Join(changed, ","))
	ev.CorrelationID = firstNonEmpty(in.CorrelationID, ev.EventID)
	return ev, nil
}

// eventID derives a name-based UUID from the parts that identify one occurrence of an event.
// GUIDs among the parts are lower-cased so that the case Dataverse happened to write them in
// does not matter.
func (p *Parser) eventID(parts ...string) string {
	for i, part := range parts {
		if uuid.Validate(part) == nil && len(part) == len(nilGUID) {
			parts[i] = strings.ToLower(part)
		}
	}
	return mintEventID(parts...)
}

// mintEventID is every EventId dvrelay mints: uuid.NewSHA1(EventIDNamespace, parts joined by
// "\n"). Each source starts its parts with its own word (webhook, plugin, recover), so two
// sources never share an id.
func mintEventID(parts ...string) string {
	return uuid.NewSHA1(eventIDNamespace, []byte(strings.Join(parts, "\n"))).String()
}

// eventIDNamespace is EventIDNamespace parsed; its bytes never change.
var eventIDNamespace = uuid.MustParse(EventIDNamespace)
