package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// Application properties are stored as one JSON object. JSON has a single number type, so on
// the way back integral numbers become int64 (the Attempt counter stays an integer) and others
// float64. A time.Time is stored as {"time": "<RFC 3339>"}: the only JSON object a property can
// hold, so it decodes back to a time.Time without ambiguity.

type storedTime struct {
	Time string `json:"time"`
}

// encodeProps validates the values (AMQP simple types only, as Service Bus accepts) and encodes them.
func encodeProps(props map[string]any) (string, error) {
	if len(props) == 0 {
		return "{}", nil
	}
	out := make(map[string]any, len(props))
	for k, v := range props {
		switch v := v.(type) {
		case string, bool, int, int8, int16, int32, int64, uint8, uint16, uint32, float32, float64:
			out[k] = v
		case time.Time:
			out[k] = storedTime{Time: v.UTC().Format(time.RFC3339Nano)}
		default:
			return "", fmt.Errorf("application property %q: unsupported type %T (use string, bool, integer, float or time.Time)", k, v)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("encode application properties: %w", err)
	}
	return string(b), nil
}

// decodeProps is encodeProps in reverse. It always returns a non-nil map.
func decodeProps(s string) (map[string]any, error) {
	raw := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode application properties: %w", err)
	}
	for k, v := range raw {
		switch v := v.(type) {
		case json.Number:
			if i, err := v.Int64(); err == nil {
				raw[k] = i
				continue
			}
			f, err := v.Float64()
			if err != nil {
				return nil, fmt.Errorf("decode application property %q: %w", k, err)
			}
			raw[k] = f
		case map[string]any:
			s, _ := v["time"].(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("decode application property %q: %w", k, err)
			}
			raw[k] = t
		}
	}
	return raw, nil
}

// mergeProps returns the stored properties with update applied on top, encoded again.
func mergeProps(stored string, update map[string]any, remove ...string) (string, error) {
	props, err := decodeProps(stored)
	if err != nil {
		return "", err
	}
	maps.Copy(props, update)
	for _, k := range remove {
		delete(props, k)
	}
	return encodeProps(props)
}
