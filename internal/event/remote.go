package event

import (
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
	CorrelationID      string
	Depth              json.Number
	InitiatingUserID   string
	InputParameters    []keyValue // nil when absent or null: the body was trimmed
	MessageName        string
	OperationCreatedOn string
	OperationID        string
	OrganizationID     string
	OwningExtension    entityReference
	PostEntityImages   []keyValue
	PreEntityImages    []keyValue
	PrimaryEntityID    string
	PrimaryEntityName  string
	RequestID          string
	UserID             string
}

// decodeRemote reads the top-level members by exact name. A member of the wrong type was
// already reported by the schema; it is reported again here (and deduplicated) so that a gap
// in the schema can never let a half-decoded context through.
func decodeRemote(top object) (remoteContext, []FieldProblem) {
	var rc remoteContext
	var problems []FieldProblem
	for _, m := range []struct {
		name string
		dst  any
	}{
		{"CorrelationId", &rc.CorrelationID},
		{"Depth", &rc.Depth},
		{"InitiatingUserId", &rc.InitiatingUserID},
		{"InputParameters", &rc.InputParameters},
		{"MessageName", &rc.MessageName},
		{"OperationCreatedOn", &rc.OperationCreatedOn},
		{"OperationId", &rc.OperationID},
		{"OrganizationId", &rc.OrganizationID},
		{"OwningExtension", &rc.OwningExtension},
		{"PostEntityImages", &rc.PostEntityImages},
		{"PreEntityImages", &rc.PreEntityImages},
		{"PrimaryEntityId", &rc.PrimaryEntityID},
		{"PrimaryEntityName", &rc.PrimaryEntityName},
		{"RequestId", &rc.RequestID},
		{"UserId", &rc.UserID},
	} {
		if err := top.into(m.name, m.dst); err != nil {
			problems = append(problems, FieldProblem{Pointer: "/" + m.name, Detail: "has the wrong shape: " + typeErrorText(err)})
		}
	}
	return rc, problems
}

func typeErrorText(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("a JSON %s cannot be read as %s", typeErr.Value, typeErr.Type)
	}
	return err.Error()
}

// platformStamps are the columns Dataverse writes on every save. They say nothing about what the
// user changed, so they never appear in ChangedFields (they stay in Attributes).
func isPlatformStamp(column string) bool {
	switch column {
	case "modifiedon", "modifiedby", "modifiedonbehalfby",
		"createdon", "createdby", "createdonbehalfby",
		"timezoneruleversionnumber", "versionnumber", "overriddencreatedon", "importsequencenumber":
		return true
	}
	return false
}

// parseRemote validates a RemoteExecutionContext and normalizes it.
//
// EventId is uuid.NewSHA1(EventIDNamespace, "webhook\n" + OrganizationId + "\n" + operation +
// "\n" + OwningExtension.Id + "\n" + MessageName + "\n" + PrimaryEntityId), ids lower-cased,
// where operation is OperationId, else RequestId, else CorrelationId. Dataverse re-posting the
// same operation to the same step (its one retry, a resumed system job) gives the same id, so
// Service Bus duplicate detection drops the copy; another operation, or another step
// registered on the same operation, gives a different id.
func (p *Parser) parseRemote(body []byte, top object, h Hints) (Event, error) {
	problems := validate(p.remote, body)
	rc, decodeProblems := decodeRemote(top)
	problems = append(problems, decodeProblems...)

	n := &normalizer{}
	ev := Event{
		SchemaVersion:  SchemaVersion,
		CorrelationId:  strings.ToLower(rc.CorrelationID),
		EventName:      EventNameFor(rc.PrimaryEntityName, rc.MessageName),
		Entity:         rc.PrimaryEntityName,
		Message:        rc.MessageName,
		RecordId:       strings.ToLower(rc.PrimaryEntityID),
		ChangedFields:  []string{},
		TriggeredBy:    strings.ToLower(rc.UserID),
		OrganizationId: strings.ToLower(rc.OrganizationID),
		Source:         SourceWebhook,
		Trimmed:        h.SizeExceeded || rc.InputParameters == nil,
	}
	if id := strings.ToLower(rc.InitiatingUserID); id != "" && id != nilGUID {
		ev.TriggeredBy = id
	}
	if rc.Depth != "" {
		// The schema bounds Depth to an integer in [0, 10000]; 1.0 and 1e1 are integers too.
		if f, err := strconv.ParseFloat(string(rc.Depth), 64); err == nil {
			ev.Depth = int(f)
		}
	}

	ev.Timestamp = formatTime(receivedAt(h))
	if rc.OperationCreatedOn != "" {
		t, err := parseWCFDate(rc.OperationCreatedOn)
		if err != nil {
			problems = append(problems, FieldProblem{Pointer: "/OperationCreatedOn", Detail: "is not a valid date: " + err.Error()})
		} else {
			ev.Timestamp = formatTime(t)
		}
	}

	if !ev.Trimmed {
		attrs, changed := n.recordData(rc)
		ev.Attributes, ev.ChangedFields = attrs, changed
	}
	problems = append(problems, n.problems...)
	if len(problems) > 0 {
		return Event{}, newValidationError(KindRemoteExecutionContext, problems)
	}

	operation := firstNonEmpty(rc.OperationID, rc.RequestID, rc.CorrelationID)
	ev.EventId = p.eventID("webhook", rc.OrganizationID, operation, rc.OwningExtension.Id, rc.MessageName, rc.PrimaryEntityID)
	return ev, nil
}

const nilGUID = "00000000-0000-0000-0000-000000000000"

// recordData builds Attributes and ChangedFields from the Target and the images:
//   - Create/Update (Target is an Entity): the PostImage (or the first post image) overlaid with
//     the Target's attributes; ChangedFields are the Target's columns minus platform stamps and
//     the primary key.
//   - Delete (Target is an EntityReference): the PreImage (or the first pre-image); no
//     ChangedFields.
func (n *normalizer) recordData(rc remoteContext) (map[string]json.RawMessage, []string) {
	attrs := make(map[string]json.RawMessage)
	changed := []string{}

	targetIndex := slices.IndexFunc(rc.InputParameters, func(kv keyValue) bool { return kv.Key == "Target" })
	var target entity
	targetIsEntity := false
	if targetIndex >= 0 {
		raw := rc.InputParameters[targetIndex].Value
		if o, err := decodeObject(raw); err == nil {
			if _, ok := o["Attributes"]; ok {
				targetIsEntity = json.Unmarshal(raw, &target) == nil
			}
		}
	} else if isCreateUpdateDelete(rc.MessageName) {
		n.fail("/InputParameters", "has no Target; a %s carries the record there", rc.MessageName)
	}

	if targetIsEntity {
		if i, img := chooseImage(rc.PostEntityImages, "PostImage"); img != nil {
			n.attributes(img.Attributes, fmt.Sprintf("/PostEntityImages/%d/value/Attributes", i), attrs)
		}
		at := fmt.Sprintf("/InputParameters/%d/value/Attributes", targetIndex)
		n.attributes(target.Attributes, at, attrs)
		primaryKey := rc.PrimaryEntityName + "id"
		for _, kv := range target.Attributes {
			if isPlatformStamp(kv.Key) || kv.Key == primaryKey || isActivityKey(kv, rc.PrimaryEntityID) {
				continue
			}
			changed = append(changed, kv.Key)
		}
		slices.Sort(changed)
		changed = slices.Compact(changed)
	} else if i, img := chooseImage(rc.PreEntityImages, "PreImage"); img != nil {
		n.attributes(img.Attributes, fmt.Sprintf("/PreEntityImages/%d/value/Attributes", i), attrs)
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	return attrs, changed
}

// isActivityKey reports the primary key of an activity table, which is activityid rather than
// <entity>id (new_customactivity's key column is activityid).
func isActivityKey(kv keyValue, recordID string) bool {
	if kv.Key != "activityid" {
		return false
	}
	var id string
	return json.Unmarshal(kv.Value, &id) == nil && strings.EqualFold(id, recordID)
}

func isCreateUpdateDelete(message string) bool {
	return message == "Create" || message == "Update" || message == "Delete"
}

// chooseImage returns the image registered under alias, else the first image, with its index.
func chooseImage(images []keyValue, alias string) (int, *entity) {
	i := slices.IndexFunc(images, func(kv keyValue) bool { return kv.Key == alias })
	if i < 0 {
		if len(images) == 0 {
			return 0, nil
		}
		i = 0
	}
	var e entity
	if err := json.Unmarshal(images[i].Value, &e); err != nil {
		return 0, nil // the schema reported it
	}
	return i, &e
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
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
