// Package event defines the canonical dvrelay event, decodes the payloads Dataverse posts
// (the native RemoteExecutionContext and the compact plugin event) into it, and validates
// both against JSON Schemas embedded in the binary.
package event

import "encoding/json"

// SchemaVersion is written into every canonical event so consumers can tell shapes apart.
const SchemaVersion = "1.0"

// Sources of an event.
const (
	SourceWebhook = "dataverse-webhook" // a RemoteExecutionContext posted by a webhook step
	SourcePlugin  = "dataverse-plugin"  // the compact event posted by a custom plugin
	SourceRecover = "dataverse-recover" // re-read by handler recover for a system job that failed
)

// SourceServiceBus: a RemoteExecutionContext Dataverse posted straight to a Service Bus queue.
const SourceServiceBus = "dataverse-servicebus"

// Event is the canonical event: the body of every queue message. The five names of the compact
// plugin event (EventName, RecordId, ChangedFields, TriggeredBy, Timestamp) keep their meaning.
type Event struct {
	SchemaVersion string `json:"SchemaVersion"`
	EventID       string `json:"EventId"`
	CorrelationID string `json:"CorrelationId"`
	EventName     string `json:"EventName"` // e.g. OpportunityUpdated
	Entity        string `json:"Entity"`    // Dataverse logical name, e.g. opportunity
	Message       string `json:"Message"`   // Create, Update, Delete, or a custom message
	RecordID      string `json:"RecordId"`  // lower-case GUID
	// ChangedFields are the columns the operation set, minus the platform's own stamps.
	ChangedFields []string `json:"ChangedFields"`
	// Attributes holds column values as plain JSON (money → number, option set → integer,
	// lookup → {id, logicalName, name}, dates → RFC 3339 UTC). Raw JSON keeps decimals exact.
	Attributes     map[string]json.RawMessage `json:"Attributes,omitempty"`
	TriggeredBy    string                     `json:"TriggeredBy"` // systemuser id (or name for plugin events)
	Timestamp      string                     `json:"Timestamp"`   // RFC 3339, UTC
	OrganizationID string                     `json:"OrganizationId,omitempty"`
	Source         string                     `json:"Source"`
	// Trimmed is true when Dataverse dropped the images and InputParameters because the
	// payload exceeded 256 KB (x-ms-dynamics-msg-size-exceeded); read the record if you need it.
	Trimmed bool `json:"Trimmed,omitempty"`
	// Depth is the platform's plug-in depth; above 1 the event was caused by other server logic.
	Depth int `json:"Depth,omitempty"`
}
