package event

import (
	"encoding/json"
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
	OwningExtensionID  string
	PostEntityImages   []keyValue
	PreEntityImages    []keyValue
	PrimaryEntityID    string
	PrimaryEntityName  string
	RequestID          string
	UserID             string
}

// readRemote picks the fields out of the decoded body. Members of the wrong type read as zero
// values; the schema has already reported them.
func readRemote(top map[string]any) remoteContext {
	rc := remoteContext{
		CorrelationID:      str(top, "CorrelationId"),
		InitiatingUserID:   str(top, "InitiatingUserId"),
		MessageName:        str(top, "MessageName"),
		OperationCreatedOn: str(top, "OperationCreatedOn"),
		OperationID:        str(top, "OperationId"),
		OrganizationID:     str(top, "OrganizationId"),
		OwningExtensionID:  str(obj(top, "OwningExtension"), "Id"),
		PostEntityImages:   keyValues(list(top, "PostEntityImages")),
		PreEntityImages:    keyValues(list(top, "PreEntityImages")),
		PrimaryEntityID:    str(top, "PrimaryEntityId"),
		PrimaryEntityName:  str(top, "PrimaryEntityName"),
		RequestID:          str(top, "RequestId"),
		UserID:             str(top, "UserId"),
	}
	rc.Depth, _ = top["Depth"].(json.Number)
	if params, ok := top["InputParameters"].([]any); ok {
		rc.InputParameters = keyValues(params)
	}
	return rc
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

// parseRemote validates a RemoteExecutionContext and normalizes it (EventId: see Parse).
func (p *Parser) parseRemote(top map[string]any, h Hints) (Event, error) {
	var problems problemList
	validate(p.remote, envelope(top, remoteLists()...), &problems)
	(&checker{problems: &problems}).remote(top)
	rc := readRemote(top)

	n := &normalizer{problems: &problems}
	ev := Event{
		SchemaVersion:  SchemaVersion,
		CorrelationID:  strings.ToLower(rc.CorrelationID),
		EventName:      EventNameFor(rc.PrimaryEntityName, rc.MessageName),
		Entity:         rc.PrimaryEntityName,
		Message:        rc.MessageName,
		RecordID:       strings.ToLower(rc.PrimaryEntityID),
		ChangedFields:  []string{},
		TriggeredBy:    strings.ToLower(rc.UserID),
		OrganizationID: strings.ToLower(rc.OrganizationID),
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
			problems.add(FieldProblem{Pointer: "/OperationCreatedOn", Detail: "is not a valid date: " + err.Error()})
		} else {
			ev.Timestamp = formatTime(t)
		}
	}

	var plain map[string]any
	// A full list of problems is an answer already: nothing the normalizer finds would be listed.
	if !ev.Trimmed && !problems.full() {
		plain, ev.ChangedFields = n.recordData(rc)
	}
	if !problems.empty() {
		return Event{}, newValidationError(KindRemoteExecutionContext, &problems)
	}
	attrs, err := encodeAttributes(plain)
	if err != nil {
		return Event{}, err
	}
	ev.Attributes = attrs

	operation := firstID(rc.OperationID, rc.RequestID, rc.CorrelationID)
	ev.EventID = p.eventID("webhook", rc.OrganizationID, operation, rc.OwningExtensionID, rc.MessageName, rc.PrimaryEntityID)
	return ev, nil
}

const nilGUID = "00000000-0000-0000-0000-000000000000"

// recordData builds the plain attributes and ChangedFields from the Target and the images:
//   - Create/Update (Target is an Entity): the PostImage (or the first post image) overlaid with
//     the Target's attributes; ChangedFields are the Target's columns minus platform stamps and
//     the primary key.
//   - Delete (Target is an EntityReference): the PreImage (or the first pre-image); no
//     ChangedFields.
func (n *normalizer) recordData(rc remoteContext) (map[string]any, []string) {
	plain := make(map[string]any)
	changed := []string{}

	targetIndex := slices.IndexFunc(rc.InputParameters, func(kv keyValue) bool { return kv.Key == "Target" })
	var targetAttrs []any
	targetIsEntity := false
	if targetIndex >= 0 {
		if t, ok := rc.InputParameters[targetIndex].Value.(map[string]any); ok {
			targetAttrs, targetIsEntity = t["Attributes"].([]any)
		}
	} else if isCreateUpdateDelete(rc.MessageName) {
		n.fail("/InputParameters", "has no Target; a %s carries the record there", rc.MessageName)
	}

	if targetIsEntity {
		if i, attrs, ok := chooseImage(rc.PostEntityImages, "PostImage"); ok {
			n.attributes(attrs, fmt.Sprintf("/PostEntityImages/%d/value/Attributes", i), plain)
		}
		n.attributes(targetAttrs, fmt.Sprintf("/InputParameters/%d/value/Attributes", targetIndex), plain)
		primaryKey := rc.PrimaryEntityName + "id"
		for _, kv := range keyValues(targetAttrs) {
			if isPlatformStamp(kv.Key) || kv.Key == primaryKey || isActivityKey(kv, rc.PrimaryEntityID) {
				continue
			}
			changed = append(changed, kv.Key)
		}
		slices.Sort(changed)
		changed = slices.Compact(changed)
	} else if i, attrs, ok := chooseImage(rc.PreEntityImages, "PreImage"); ok {
		n.attributes(attrs, fmt.Sprintf("/PreEntityImages/%d/value/Attributes", i), plain)
	}
	return plain, changed
}

// isActivityKey reports the primary key of an activity table, which is activityid rather than
// <entity>id (new_customactivity's key column is activityid).
func isActivityKey(kv keyValue, recordID string) bool {
	id, ok := kv.Value.(string)
	return kv.Key == "activityid" && ok && strings.EqualFold(id, recordID)
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
