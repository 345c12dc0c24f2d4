package customhandler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SBMessage is a Service Bus message as a Service Bus trigger invocation describes it.
type SBMessage struct {
	Body          []byte
	MessageID     string
	CorrelationID string
	Subject       string
	SessionID     string
	// DeliveryCount is 1 on the first delivery; 0 when the host did not say.
	DeliveryCount  int
	SequenceNumber int64
	// ApplicationProperties keep their JSON types: string, bool, int64 for integers, float64
	// for other numbers, and maps and slices for anything nested.
	ApplicationProperties map[string]any
	EnqueuedTime          time.Time // UTC; zero when the host did not say
}

// DecodeServiceBusTrigger reads the Service Bus trigger invocation posted for the binding named
// binding (function.json "name", e.g. "msg").
//
// The body (Data.<binding>) is accepted in every form a host sends: a JSON string holding JSON
// text encoded once or twice (the default dataType "string" encodes it twice), a base64 string
// (dataType "binary"), or a JSON object. Only a missing body or an undecodable envelope is an
// error; metadata is read leniently and a field that cannot be read is left zero.
func DecodeServiceBusTrigger(body []byte, binding string) (SBMessage, error) {
	inv, err := DecodeInvocation(body)
	if err != nil {
		return SBMessage{}, err
	}
	raw, err := inv.binding(binding)
	if err != nil {
		return SBMessage{}, err
	}
	payload, err := decodeMessageBody(raw)
	if err != nil {
		return SBMessage{}, fmt.Errorf("%w: Data.%s: %w", ErrInvocation, binding, err)
	}

	m := SBMessage{
		Body:          payload,
		MessageID:     inv.metaString("MessageId"),
		CorrelationID: inv.metaString("CorrelationId"),
		Subject:       inv.metaString("Subject", "Label"),
		SessionID:     inv.metaString("SessionId"),
	}
	if n, ok := inv.metaInt("DeliveryCount"); ok && n > 0 && n <= 1<<31-1 {
		m.DeliveryCount = int(n)
	}
	if n, ok := inv.metaInt("SequenceNumber"); ok {
		m.SequenceNumber = n
	}
	m.ApplicationProperties = inv.metaProperties("ApplicationProperties")
	if m.ApplicationProperties == nil {
		m.ApplicationProperties = inv.metaProperties("UserProperties")
	}
	if m.ApplicationProperties == nil {
		m.ApplicationProperties = map[string]any{}
	}
	m.EnqueuedTime = inv.metaTime("EnqueuedTime", "EnqueuedTimeUtc")
	return m, nil
}

// decodeMessageBody unwraps the trigger's Data value into the message body bytes. Once the
// Data string is decoded, its first character tells the host's encodings apart: a quote is the
// default dataType "string", whose JSON text encoding is peeled exactly once (the body may be a
// JSON string itself, whose own quotes belong to it); '{' or '[' is JSON text encoded only once;
// anything else is base64 (dataType "binary"), or else plain text, handed on as is for the
// consumer to judge. Text is never taken for base64: "test" would decode to garbage, and a
// dead-letter copy would keep that instead of what was sent.
func decodeMessageBody(raw json.RawMessage) ([]byte, error) {
	t := bytes.TrimSpace(raw)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return append([]byte(nil), t...), nil // already a JSON value, not a string
	}
	if len(t) == 0 || t[0] != '"' {
		return nil, fmt.Errorf("body is neither a JSON string nor an object")
	}
	var s string
	if err := json.Unmarshal(t, &s); err != nil {
		return nil, fmt.Errorf("body string: %w", err)
	}
	trimmed := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(trimmed, "{"), strings.HasPrefix(trimmed, "["):
		return []byte(s), nil
	case strings.HasPrefix(trimmed, `"`):
		var text string
		if err := json.Unmarshal([]byte(trimmed), &text); err != nil {
			return []byte(s), nil
		}
		return []byte(text), nil
	}
	if b, err := base64.StdEncoding.DecodeString(trimmed); err == nil && len(b) > 0 {
		return b, nil
	}
	return []byte(s), nil
}

// metaProperties reads a properties dictionary: normally a JSON object, tolerated as a JSON
// string holding one.
func (inv Invocation) metaProperties(key string) map[string]any {
	raw := inv.meta(key)
	if raw == nil {
		return nil
	}
	t := bytes.TrimSpace(raw)
	if t[0] == '"' {
		s, ok := unwrapString(t)
		if !ok {
			return nil
		}
		t = []byte(s)
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	var props map[string]any
	if err := dec.Decode(&props); err != nil {
		return nil
	}
	for k, v := range props {
		props[k] = amqpValue(v)
	}
	return props
}

// amqpValue turns json.Number into int64 when it is integral and float64 otherwise, so
// property values have the types the queue package documents.
func amqpValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		for k, e := range x {
			x[k] = amqpValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = amqpValue(e)
		}
	}
	return v
}

// Timestamp layouts the host writes: DateTimeOffset with a zone, and DateTime without one
// (which for Service Bus is UTC).
var timeLayouts = [...]string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
}

// metaTime reads the first key that holds a parsable timestamp, as UTC.
func (inv Invocation) metaTime(keys ...string) time.Time {
	for _, k := range keys {
		s := strings.TrimSpace(inv.metaString(k))
		if s == "" {
			continue
		}
		for _, layout := range timeLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC()
			}
		}
	}
	return time.Time{}
}
