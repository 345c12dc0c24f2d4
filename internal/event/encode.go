package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/dvrelay/dvrelay/internal/platform/jsonstring"
)

// AppendCanonical appends ev as the queue message body, byte for byte what encoding/json's
// Encoder with SetEscapeHTML(false) writes for it, without the trailing newline; FuzzAppendCanonical
// holds it to that. HTML escaping is off because the text is data for programs: json.Marshal
// would turn every '<', '>' and '&' of a column value into a six-byte \u escape, and markup-heavy
// text (an email's HTML description) could grow a body Dataverse kept under 256 KB past what a
// Service Bus message holds.
//
// Why not encoding/json: its reflection walk, the sort of each map's keys through reflect.Value,
// and above all the re-scan of every json.RawMessage (column values, parameters) to compact it
// were a sixth of what the intake spent on an event. Here a raw value already compact, which
// every value event builds is, is copied as it is.
func AppendCanonical(dst []byte, ev *Event) ([]byte, error) {
	dst = append(dst, `{"SchemaVersion":`...)
	dst = jsonstring.Append(dst, ev.SchemaVersion)
	dst = append(dst, `,"EventId":`...)
	dst = jsonstring.Append(dst, ev.EventID)
	dst = append(dst, `,"CorrelationId":`...)
	dst = jsonstring.Append(dst, ev.CorrelationID)
	dst = append(dst, `,"EventName":`...)
	dst = jsonstring.Append(dst, ev.EventName)
	dst = append(dst, `,"Entity":`...)
	dst = jsonstring.Append(dst, ev.Entity)
	dst = append(dst, `,"Message":`...)
	dst = jsonstring.Append(dst, ev.Message)
	if ev.RecordID != "" {
		dst = append(dst, `,"RecordId":`...)
		dst = jsonstring.Append(dst, ev.RecordID)
	}
	dst = append(dst, `,"ChangedFields":`...)
	if ev.ChangedFields == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, f := range ev.ChangedFields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonstring.Append(dst, f)
		}
		dst = append(dst, ']')
	}
	var err error
	if len(ev.Attributes) > 0 {
		dst = append(dst, `,"Attributes":`...)
		if dst, err = appendRawMap(dst, ev.Attributes); err != nil {
			return nil, fmt.Errorf("attributes: %w", err)
		}
	}
	dst = append(dst, `,"TriggeredBy":`...)
	dst = jsonstring.Append(dst, ev.TriggeredBy)
	dst = append(dst, `,"Timestamp":`...)
	dst = jsonstring.Append(dst, ev.Timestamp)
	if ev.OrganizationID != "" {
		dst = append(dst, `,"OrganizationId":`...)
		dst = jsonstring.Append(dst, ev.OrganizationID)
	}
	dst = append(dst, `,"Source":`...)
	dst = jsonstring.Append(dst, ev.Source)
	if ev.Trimmed {
		dst = append(dst, `,"Trimmed":true`...)
	}
	if ev.Depth != 0 {
		dst = append(dst, `,"Depth":`...)
		dst = strconv.AppendInt(dst, int64(ev.Depth), 10)
	}
	if len(ev.Parameters) > 0 {
		dst = append(dst, `,"Parameters":`...)
		if dst, err = appendRawMap(dst, ev.Parameters); err != nil {
			return nil, fmt.Errorf("parameters: %w", err)
		}
	}
	if len(ev.OutputParameters) > 0 {
		dst = append(dst, `,"OutputParameters":`...)
		if dst, err = appendRawMap(dst, ev.OutputParameters); err != nil {
			return nil, fmt.Errorf("output parameters: %w", err)
		}
	}
	if ev.Stage != 0 {
		dst = append(dst, `,"Stage":`...)
		dst = strconv.AppendInt(dst, int64(ev.Stage), 10)
	}
	if ev.Mode != nil {
		dst = append(dst, `,"Mode":`...)
		dst = strconv.AppendInt(dst, int64(*ev.Mode), 10)
	}
	if ev.IsInTransaction != nil {
		dst = append(dst, `,"IsInTransaction":`...)
		dst = strconv.AppendBool(dst, *ev.IsInTransaction)
	}
	if ev.Relationship != "" {
		dst = append(dst, `,"Relationship":`...)
		dst = jsonstring.Append(dst, ev.Relationship)
	}
	if len(ev.RelatedRecords) > 0 {
		dst = append(dst, `,"RelatedRecords":[`...)
		for i, r := range ev.RelatedRecords {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":`...)
			dst = jsonstring.Append(dst, r.ID)
			dst = append(dst, `,"logicalName":`...)
			dst = jsonstring.Append(dst, r.LogicalName)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

// appendRawMap writes an object of raw values with its keys sorted, as encoding/json does.
func appendRawMap(dst []byte, m map[string]json.RawMessage) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstring.Append(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = appendRaw(dst, m[k]); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return append(dst, '}'), nil
}

// appendRaw writes a raw value compacted, as encoding/json writes a json.RawMessage. A nil or
// empty one is null, as encoding/json writes a nil RawMessage.
func appendRaw(dst []byte, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return append(dst, "null"...), nil
	}
	if isCompact(raw) {
		return append(dst, raw...), nil
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// isCompact reports a raw value with no whitespace outside its strings, that starts and ends as
// one JSON value can: what the values event builds look like, copied without a re-scan. Anything
// else goes through json.Compact, which also refuses what is not JSON.
func isCompact(raw []byte) bool {
	switch raw[0] {
	case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
	default:
		return false
	}
	switch raw[len(raw)-1] {
	case ' ', '\t', '\r', '\n', ',', ':':
		return false
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			return false
		case inString && c < 0x20:
			return false
		}
	}
	return !inString
}
