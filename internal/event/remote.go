package event

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// remoteContext holds the RemoteExecutionContext fields dvrelay reads. Everything else
// (SharedVariables, ParentContext, FormattedValues, fields Microsoft adds later) is ignored.
type remoteContext struct {
	CorrelationID       string
	Depth               json.Number
	InitiatingUserID    string
	InputParameters     []keyValue // nil when absent or null: the body was trimmed
	IsInTransaction     *bool
	MessageName         string
	Mode                json.Number
	OperationCreatedOn  string
	OperationID         string
	OrganizationID      string
	OutputParameters    []keyValue
	OwningExtensionID   string
	OwningExtensionName string
	PostEntityImages    []keyValue
	PreEntityImages     []keyValue
	PrimaryEntityID     string
	PrimaryEntityName   string
	RequestID           string
	Stage               json.Number
	UserID              string
}

// readRemote picks the fields out of the decoded body. Members of the wrong type read as zero
// values; the schema has already reported them.
func readRemote(top map[string]any) remoteContext {
	owner := obj(top, "OwningExtension")
	rc := remoteContext{
		CorrelationID:       str(top, "CorrelationId"),
		InitiatingUserID:    str(top, "InitiatingUserId"),
		MessageName:         str(top, "MessageName"),
		OperationCreatedOn:  str(top, "OperationCreatedOn"),
		OperationID:         str(top, "OperationId"),
		OrganizationID:      str(top, "OrganizationId"),
		OutputParameters:    keyValues(list(top, "OutputParameters")),
		OwningExtensionID:   str(owner, "Id"),
		OwningExtensionName: str(owner, "Name"),
		PostEntityImages:    keyValues(list(top, "PostEntityImages")),
		PreEntityImages:     keyValues(list(top, "PreEntityImages")),
		PrimaryEntityID:     str(top, "PrimaryEntityId"),
		PrimaryEntityName:   str(top, "PrimaryEntityName"),
		RequestID:           str(top, "RequestId"),
		UserID:              str(top, "UserId"),
	}
	rc.Depth, _ = top["Depth"].(json.Number)
	rc.Stage, _ = top["Stage"].(json.Number)
	rc.Mode, _ = top["Mode"].(json.Number)
	if b, ok := top["IsInTransaction"].(bool); ok {
		rc.IsInTransaction = &b
	}
	if params, ok := top["InputParameters"].([]any); ok {
		rc.InputParameters = keyValues(params)
	}
	return rc
}

// parseRemote validates a RemoteExecutionContext and normalizes it (EventId: see Parse).
//
// A context may lack what dvrelay can do without, and is then accepted with it left out: a
// context an author trimmed, or one a virtual table's provider wrote, is still an event, and a
// 400 would lose it (Dataverse never retries one). Only what no event can be made without is
// required:
//   - MessageName: it names the event and the routes match on it;
//   - PrimaryEntityName, unless the Target names the table: the event's table.
//
// Everything else is optional, null and the all-zero GUID counting as absent: without UserId and
// InitiatingUserId, TriggeredBy is empty (and the loop guard of DVRELAY_IGNORE_USER_IDS has no
// user to compare); without OrganizationId, OrganizationId is left out; without CorrelationId
// the intake gives the event a correlation id of its own; without PrimaryEntityId the record's id
// comes from the Target or the EntityMoniker, or RecordId is left out; without BusinessUnitId,
// OperationCreatedOn, Depth, Stage, Mode or OwningExtension their members are left out (the
// Timestamp is the receive time). Without OperationId, RequestId and CorrelationId the EventId is
// named by the body itself (see Parse).
func (p *Parser) parseRemote(body []byte, top map[string]any, h Hints) (Event, error) {
	var problems problemList
	validate(p.remote, envelope(top, remoteLists(), stepMembers()...), &problems)
	(&checker{problems: &problems}).remote(top)
	rc := readRemote(top)

	n := &normalizer{problems: &problems}
	ev := Event{
		SchemaVersion:   SchemaVersion,
		CorrelationID:   strings.ToLower(firstID(rc.CorrelationID)),
		EventName:       EventNameFor(rc.PrimaryEntityName, rc.MessageName),
		Entity:          rc.PrimaryEntityName,
		Message:         rc.MessageName,
		ChangedFields:   []string{},
		TriggeredBy:     strings.ToLower(firstID(rc.InitiatingUserID, rc.UserID)),
		OrganizationID:  strings.ToLower(firstID(rc.OrganizationID)),
		Source:          SourceWebhook,
		Trimmed:         h.SizeExceeded || rc.InputParameters == nil,
		Stage:           schemaInt(rc.Stage),
		IsInTransaction: rc.IsInTransaction,
		StepID:          strings.ToLower(rc.OwningExtensionID),
		StepName:        rc.OwningExtensionName,
	}
	if rc.Mode != "" {
		mode := schemaInt(rc.Mode)
		ev.Mode = &mode
	}
	// The schema bounds Depth to an integer in [0, 10000].
	ev.Depth = schemaInt(rc.Depth)

	ev.Timestamp = FormatTime(receivedAt(h))
	if rc.OperationCreatedOn != "" {
		t, err := parseOperationDate(rc.OperationCreatedOn)
		switch {
		case err == nil:
			ev.Timestamp = FormatTime(t)
		case !errors.Is(err, errNotReadable):
			problems.add(FieldProblem{Pointer: "/OperationCreatedOn", Detail: "is not a valid date: " + err.Error()})
		}
	}

	var parts recordParts
	// A full list of problems is an answer already: nothing the normalizer finds would be listed.
	if !problems.full() {
		parts = n.recordData(rc, ev.Trimmed)
	}
	if rc.PrimaryEntityName == "" && parts.targetTable == "" {
		problems.add(FieldProblem{Pointer: "/PrimaryEntityName", Detail: "is required when no Target names the table"})
	}
	if !problems.empty() {
		return Event{}, newValidationError(KindRemoteExecutionContext, &problems)
	}
	var err error
	if ev.Attributes, err = encodeAttributes(parts.attributes); err != nil {
		return Event{}, err
	}
	if ev.Parameters, err = encodeAttributes(parts.parameters); err != nil {
		return Event{}, err
	}
	if ev.OutputParameters, err = encodeAttributes(parts.outputs); err != nil {
		return Event{}, err
	}
	if parts.changed != nil {
		ev.ChangedFields = parts.changed
	}
	if (rc.PrimaryEntityName == unboundEntity || rc.PrimaryEntityName == "") && parts.targetTable != "" {
		// A step registered for no table (Associate and Disassociate can only be) still acts on
		// the Target's record: name the event by that table, as a bound message is named. So does
		// a context that does not name its table.
		ev.Entity = parts.targetTable
		ev.EventName = EventNameFor(ev.Entity, rc.MessageName)
	}
	ev.RecordID = strings.ToLower(firstID(parts.recordID, rc.PrimaryEntityID))
	ev.Relationship = parts.relationship
	ev.RelatedRecords = parts.related

	operation := firstID(rc.OperationID, rc.RequestID, rc.CorrelationID)
	if operation == "" {
		// Nothing names the operation: the body does. A re-post of it is the same bytes.
		sum := sha256.Sum256(body)
		operation = "body " + hex.EncodeToString(sum[:])
	}
	ev.EventID = p.eventID("webhook", rc.OrganizationID, operation, rc.OwningExtensionID, rc.MessageName, rc.PrimaryEntityID)
	// Every event carries a correlation id; as for a plugin event, the EventId stands in.
	ev.CorrelationID = firstNonEmpty(ev.CorrelationID, ev.EventID)
	return ev, nil
}

// schemaInt reads a number the schema has bounded to an integer; 1.0 and 1e1 are integers too.
func schemaInt(n json.Number) int {
	if n == "" {
		return 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0 // the schema has reported it
	}
	return int(f)
}

const nilGUID = "00000000-0000-0000-0000-000000000000"

// unboundEntity is the PrimaryEntityName of a message that names no table.
const unboundEntity = "none"

// recordParts is what a message carries beyond its envelope.
type recordParts struct {
	attributes map[string]any
	changed    []string
	parameters map[string]any // InputParameters but Target
	outputs    map[string]any // OutputParameters
	// recordID is the Target's id, else the EntityMoniker's; "" when neither names one.
	recordID string
	// targetTable is the Target's LogicalName, "" without a Target.
	targetTable  string
	relationship string
	related      []RecordRef
}

// recordData reads the Target, the images and the parameters:
//   - Create/Update (Target is an Entity): the PostImage (or the first post image) overlaid with
//     the Target's attributes; ChangedFields are the Target's columns minus platform stamps,
//     the primary key and an all-zero processid on Create.
//   - Delete (Target is an EntityReference): the PreImage (or the first pre-image); no
//     ChangedFields. Any other message without an Entity Target (Associate, SetState, Assign, a
//     custom API): the PostImage when one is registered, else the PreImage.
//   - Parameters: every InputParameter but Target; Relationship and RelatedRecords from an
//     Associate's or Disassociate's Relationship and RelatedEntities.
//   - OutputParameters, also when trimmed: Dataverse trims only the inputs and the images.
func (n *normalizer) recordData(rc remoteContext, trimmed bool) recordParts {
	var parts recordParts
	parts.outputs = n.parameters(rc.OutputParameters, "/OutputParameters", false)
	if trimmed {
		return parts
	}
	parts.attributes = make(map[string]any)
	parts.changed = []string{}

	targetIndex := slices.IndexFunc(rc.InputParameters, func(kv keyValue) bool { return kv.Key == "Target" })
	var target map[string]any
	var targetAttrs []any
	targetIsEntity := false
	if targetIndex >= 0 {
		if t, ok := rc.InputParameters[targetIndex].Value.(map[string]any); ok {
			target = t
			targetAttrs, targetIsEntity = t["Attributes"].([]any)
		}
	} else if isCreateUpdateDelete(rc.MessageName) {
		n.fail("/InputParameters", "has no Target; a %s carries the record there", rc.MessageName)
	}

	if targetIsEntity {
		if i, attrs, ok := chooseImage(rc.PostEntityImages, "PostImage"); ok {
			n.attributes(attrs, fmt.Sprintf("/PostEntityImages/%d/value/Attributes", i), parts.attributes)
		}
		n.attributes(targetAttrs, fmt.Sprintf("/InputParameters/%d/value/Attributes", targetIndex), parts.attributes)
		// A context that does not name its table or record still has them on its Target.
		table := cmp.Or(rc.PrimaryEntityName, str(target, "LogicalName"))
		if table == unboundEntity {
			table = str(target, "LogicalName")
		}
		recordID := cmp.Or(rc.PrimaryEntityID, str(target, "Id"))
		for _, kv := range keyValues(targetAttrs) {
			if !isChange(rc.MessageName, table, recordID, kv.Key, kv.Value) {
				continue
			}
			parts.changed = append(parts.changed, kv.Key)
		}
		slices.Sort(parts.changed)
		parts.changed = slices.Compact(parts.changed)
	} else if i, attrs, ok := chooseImage(rc.PostEntityImages, "PostImage"); ok && rc.MessageName != "Delete" {
		n.attributes(attrs, fmt.Sprintf("/PostEntityImages/%d/value/Attributes", i), parts.attributes)
	} else if i, attrs, ok := chooseImage(rc.PreEntityImages, "PreImage"); ok {
		n.attributes(attrs, fmt.Sprintf("/PreEntityImages/%d/value/Attributes", i), parts.attributes)
	}

	// The checker has held the Target's Id to a GUID, and EntityMoniker's when it is typed.
	parts.recordID = firstID(str(target, "Id"), referenceID(rc.InputParameters, "EntityMoniker"))
	parts.targetTable = str(target, "LogicalName")
	parts.parameters = n.parameters(rc.InputParameters, "/InputParameters", true)
	parts.relationship, parts.related = relationshipOf(rc.InputParameters)
	return parts
}

// referenceID is the Id of the EntityReference parameter name, or "".
func referenceID(params []keyValue, name string) string {
	for _, kv := range params {
		if o, ok := kv.Value.(map[string]any); ok && kv.Key == name && typeKind(o) == typeEntityReference {
			return str(o, "Id")
		}
	}
	return ""
}

// relationshipOf reads an Associate's or Disassociate's Relationship (its schema name) and
// RelatedEntities (an EntityReferenceCollection, written as a bare array of EntityReference).
// Only typed values count: those are the ones the checker has held to their definitions.
func relationshipOf(params []keyValue) (string, []RecordRef) {
	var name string
	var related []RecordRef
	for _, kv := range params {
		switch kv.Key {
		case "Relationship":
			if o, ok := kv.Value.(map[string]any); ok && typeKind(o) == typeRelationship {
				name = str(o, "SchemaName")
			}
		case "RelatedEntities":
			items, _ := kv.Value.([]any)
			related = related[:0]
			for _, item := range items {
				if o, ok := item.(map[string]any); ok && typeKind(o) == typeEntityReference {
					related = append(related, RecordRef{ID: strings.ToLower(str(o, "Id")), LogicalName: str(o, "LogicalName")})
				}
			}
		}
	}
	if len(related) == 0 {
		related = nil
	}
	return name, related
}

func isCreateUpdateDelete(message string) bool {
	return message == "Create" || message == "Update" || message == "Delete"
}

// chooseImage returns the attributes of the image registered under alias, else of the first
// image, with the image's index.
func chooseImage(images []keyValue, alias string) (int, []any, bool) {
	i := slices.IndexFunc(images, func(kv keyValue) bool { return kv.Key == alias })
	if i < 0 {
		if len(images) == 0 {
			return 0, nil, false
		}
		i = 0
	}
	image, ok := images[i].Value.(map[string]any)
	if !ok {
		return 0, nil, false // the schema reports it
	}
	return i, list(image, "Attributes"), true
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// firstID returns the first id that names something: "" and the all-zero GUID (what a .NET
// Guid holds when nothing was assigned, e.g. OperationId without a system job) do not.
func firstID(ids ...string) string {
	for _, id := range ids {
		if id != "" && id != nilGUID {
			return id
		}
	}
	return ""
}

// receivedAt is the fallback timestamp: the intake's clock reading, or now if it gave none.
func receivedAt(h Hints) time.Time {
	if h.ReceivedAt.IsZero() {
		return time.Now()
	}
	return h.ReceivedAt
}
