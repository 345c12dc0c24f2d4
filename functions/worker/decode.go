package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// Two deliveries reach the worker. The intake queues the canonical event; a Dataverse service
// endpoint with contract Queue or Topic posts its RemoteExecutionContext straight to Service Bus,
// skipping the intake. decode tells them apart from the body (and Dataverse's application
// properties) and turns either into the canonical event, so the routes never know which came.

// NativeParser normalizes a RemoteExecutionContext exactly as the intake does: same checks, same
// EventId. *event.Parser implements it.
type NativeParser interface {
	Parse(body []byte, h event.Hints) (event.Event, error)
}

var _ NativeParser = (*event.Parser)(nil)

// markedDecoder decodes a body the intake marked as its own canonical event (event.Marked)
// without checking it again. *event.Parser implements it.
type markedDecoder interface {
	DecodeMarked(body []byte) (event.Event, error)
}

var _ markedDecoder = (*event.Parser)(nil)

// Application properties Dataverse puts on the messages it posts to Service Bus: claims keyed by
// URI, and a flag when it trimmed the context to fit.
const (
	dataverseClaimPrefix = "http://schemas.microsoft.com/xrm/2011/Claims/"
	// propMessageMaxSizeExceeded marks a context Dataverse cut down to fit 192 KB: InputParameters,
	// images and ParentContext are gone.
	propMessageMaxSizeExceeded = "MessageMaxSizeExceeded"
)

// dataverseClaims are the claim properties that, any one of them present, say Dataverse posted
// the message.
var dataverseClaims = [...]string{
	dataverseClaimPrefix + "Organization",
	dataverseClaimPrefix + "User",
	dataverseClaimPrefix + "InitiatingUser",
	dataverseClaimPrefix + "EntityLogicalName",
	dataverseClaimPrefix + "RequestName",
}

// UnsupportedFormatError reports a body in a message format of a Dataverse service endpoint that
// the worker does not read. No retry can change the body, so it is dead-lettered at once as
// UnsupportedMessageFormat; only a change of the service endpoint helps the events after it.
type UnsupportedFormatError struct {
	Format        string // ".NET Binary" or "XML"
	MessageFormat int    // the service endpoint's messageformat that writes it: 1 or 3
}

func (e *UnsupportedFormatError) Error() string {
	return fmt.Sprintf("the body is a Dataverse context in %s (service endpoint messageformat %d), which dvrelay does not read: "+
		"set the service endpoint's message format to JSON (messageformat 2); this message fails the same way if resubmitted",
		e.Format, e.MessageFormat)
}

// fromDataverse reports whether the message carries one of Dataverse's claim properties.
func fromDataverse(props map[string]any) bool {
	for _, k := range dataverseClaims {
		if _, ok := props[k]; ok {
			return true
		}
	}
	return false
}

// sizeExceeded reports Dataverse's MessageMaxSizeExceeded property. Its value is not documented;
// only an explicit false (or "false") reads as absent.
func sizeExceeded(props map[string]any) bool {
	v, ok := props[propMessageMaxSizeExceeded]
	if !ok {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return !strings.EqualFold(strings.TrimSpace(x), "false")
	}
	return true
}

// decoded is a delivery's body as the routes see it.
type decoded struct {
	event event.Event
	doc   *eventDoc // the event as JSON, for $event paths
	// native: the body was a RemoteExecutionContext Dataverse posted, not the intake's event.
	native bool
}

// decode turns the body of d into the canonical event. Errors are the decoder's
// (*event.ValidationError, event.ErrMalformed) or *UnsupportedFormatError; each means the message
// can never be processed.
//
// A body the intake wrote and marked (event.PropCanonical) is decoded once, without being
// checked again: the intake checked it, and the mark says it is those bytes.
func (w *Worker) decode(d queue.Delivery) (decoded, error) {
	if m, ok := w.decoder.(markedDecoder); ok && event.Marked(d.Body, d.ApplicationProperties) {
		ev, err := m.DecodeMarked(d.Body)
		if err != nil {
			return decoded{}, err
		}
		return decoded{event: ev, doc: &eventDoc{body: d.Body}}, nil
	}
	switch event.Sniff(d.Body, fromDataverse(d.ApplicationProperties)) {
	case event.FormatDotNetBinary:
		return decoded{}, &UnsupportedFormatError{Format: ".NET Binary", MessageFormat: 1}
	case event.FormatXML:
		return decoded{}, &UnsupportedFormatError{Format: "XML", MessageFormat: 3}
	case event.FormatContextJSON:
		if w.native != nil {
			return w.decodeContext(d)
		}
	}
	ev, err := w.decoder.DecodeCanonical(d.Body)
	if err != nil {
		return decoded{}, err
	}
	return decoded{event: ev, doc: &eventDoc{body: d.Body}}, nil
}

// decodeContext normalizes a RemoteExecutionContext that Dataverse posted to the queue with the
// intake's parser, so it gets the EventId the intake would give it: the same operation reaching
// the worker both ways is recognisably one event. What the intake takes from the HTTP request
// comes from the message instead: the correlation id (the message's, else the context's), the
// trim flag (MessageMaxSizeExceeded), and the time it arrived (EnqueuedTime), which stamps a
// context without a usable OperationCreatedOn.
func (w *Worker) decodeContext(d queue.Delivery) (decoded, error) {
	received := d.EnqueuedTime
	if received.IsZero() {
		received = w.now()
	}
	ev, err := w.native.Parse(d.Body, event.Hints{SizeExceeded: sizeExceeded(d.ApplicationProperties), ReceivedAt: received})
	if err != nil {
		return decoded{}, err
	}
	ev.Source = event.SourceServiceBus
	// The EventId is the last resort: unlike a fresh UUID it is the same on every redelivery.
	ev.CorrelationID = firstUsable(d.CorrelationID, ev.CorrelationID, ev.EventID)
	body, err := json.Marshal(ev)
	if err != nil {
		return decoded{}, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	return decoded{event: ev, doc: &eventDoc{body: body}, native: true}, nil
}

// firstUsable returns the first id that may travel in headers and logs, by the intake's rule for
// correlation ids (event.ValidCorrelationID).
func firstUsable(ids ...string) string {
	for _, id := range ids {
		if v := event.ValidCorrelationID(id); v != "" {
			return v
		}
	}
	return ""
}

// deadLetterReason is the reason a body that cannot be decoded is parked with.
func deadLetterReason(err error) string {
	var unsupported *UnsupportedFormatError
	if errors.As(err, &unsupported) {
		return queue.ReasonUnsupportedMessageFormat
	}
	return queue.ReasonInvalidMessage
}
