// Package event defines the canonical dvrelay event, decodes the payloads Dataverse posts
// (the native RemoteExecutionContext and the compact plugin event) into it, and validates
// both against JSON Schemas embedded in the binary.
package event

import "encoding/json"

// SchemaVersion is written into every canonical event so consumers can tell shapes apart.
// Version 1.1 only adds members to 1.0 (Parameters, OutputParameters, Stage, Mode,
// IsInTransaction, Relationship, RelatedRecords) and lets RecordId be absent when no record is
// named (an unbound message); DecodeCanonical accepts both versions.
const SchemaVersion = "1.1"

// Sources of an event.
const (
	SourceWebhook = "dataverse-webhook" // a RemoteExecutionContext posted by a webhook step
	SourcePlugin  = "dataverse-plugin"  // the compact event posted by a custom plugin
	SourceRecover = "dataverse-recover" // re-read by handler recover for a system job that failed
)

// SourceServiceBus: a RemoteExecutionContext Dataverse posted straight to a Service Bus queue.
const SourceServiceBus = "dataverse-servicebus"

// Stages of the event pipeline a step is registered in, as Dataverse numbers them.
const (
	StagePreValidation = 10 // before the transaction, before security checks
	StagePreOperation  = 20 // inside the transaction, before the change is written
	StagePostOperation = 40 // after the change is written (inside the transaction when synchronous)
)

// Execution modes of a step, as Dataverse numbers them.
const (
	ModeSynchronous  = 0 // the step runs while the user waits; a failure fails the operation
	ModeAsynchronous = 1 // a system job runs the step after the operation committed
)

// Event is the canonical event: the body of every queue message. The five names of the compact
// plugin event (EventName, RecordId, ChangedFields, TriggeredBy, Timestamp) keep their meaning.
type Event struct {
	SchemaVersion string `json:"SchemaVersion"`
	EventID       string `json:"EventId"`
	CorrelationID string `json:"CorrelationId"`
	EventName     string `json:"EventName"` // e.g. OpportunityUpdated, or NewOrderSubmitted for an unbound message
	Entity        string `json:"Entity"`    // Dataverse logical name, e.g. opportunity; "none" for an unbound message
	Message       string `json:"Message"`   // Create, Update, Delete, or a custom message
	// RecordID is the lower-case GUID of the record the message acts on: the Target's id, else
	// the EntityMoniker's (SetState), else PrimaryEntityId. It is empty, and omitted, when none
	// of them names a record (an unbound custom API or action): never the all-zero GUID.
	RecordID string `json:"RecordId,omitempty"`
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

	// Members added in 1.1. Each is absent when the source does not carry it: a plugin event or
	// a recovered event has no stage, mode or parameters.

	// Parameters are the message's InputParameters other than Target, by name, as plain JSON:
	// values as in Attributes, except that an Entity is {logicalName, id, attributes} and an
	// EntityCollection an array of those, so a custom API's inputs arrive whole.
	Parameters map[string]json.RawMessage `json:"Parameters,omitempty"`
	// OutputParameters are the message's OutputParameters in the same form (PostOperation only:
	// the id of a Create, an action's outputs).
	OutputParameters map[string]json.RawMessage `json:"OutputParameters,omitempty"`
	// Stage is the pipeline stage of the step that posted: StagePreValidation,
	// StagePreOperation or StagePostOperation.
	Stage int `json:"Stage,omitempty"`
	// Mode is the step's execution mode, ModeSynchronous or ModeAsynchronous.
	Mode *int `json:"Mode,omitempty"`
	// IsInTransaction is true when the step ran inside the operation's database transaction,
	// which may still roll back after the event was posted.
	IsInTransaction *bool `json:"IsInTransaction,omitempty"`
	// Relationship is the schema name of the relationship an Associate or Disassociate acts on.
	Relationship string `json:"Relationship,omitempty"`
	// RelatedRecords are the records an Associate or Disassociate links to or unlinks from the
	// Target (its RelatedEntities).
	RelatedRecords []RecordRef `json:"RelatedRecords,omitempty"`

	// StepID and StepName name the webhook step that posted (the context's OwningExtension), for
	// the intake's own use; they are not part of the queue message.
	StepID   string `json:"-"`
	StepName string `json:"-"`
}

// RecordRef names one record.
type RecordRef struct {
	ID          string `json:"id"` // lower-case GUID
	LogicalName string `json:"logicalName"`
}
