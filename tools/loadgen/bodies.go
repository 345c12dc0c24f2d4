package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/google/uuid"
)

// bodies makes distinct events from one template: every occurrence of the template's record and
// operation ids is replaced by fresh ones, so each post is a new Dataverse operation with its
// own EventId (a repeated id would be dropped as a duplicate, and measure nothing).
type bodies struct {
	template []byte
	// spans lists, per replaced id, where it occurs and whether in upper case.
	spans [][]span
}

type span struct {
	at    int
	upper bool
}

// idFields are the top-level fields whose GUIDs make an event distinct: the native
// RemoteExecutionContext's record and operation, and the plugin event's record.
var idFields = []string{"PrimaryEntityId", "OperationId", "RequestId", "RecordId"}

func loadBodies(path string) (*bodies, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", path, err)
	}
	b := &bodies{template: raw}
	lower := bytes.ToLower(raw)
	for _, f := range idFields {
		id, _ := top[f].(string)
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 || strings.Trim(id, "0-") == "" {
			continue
		}
		needle := []byte(strings.ToLower(id))
		var spans []span
		for i := 0; ; {
			j := bytes.Index(lower[i:], needle)
			if j < 0 {
				break
			}
			at := i + j
			spans = append(spans, span{at: at, upper: bytes.ContainsAny(raw[at:at+36], "ABCDEF")})
			i = at + 36
		}
		b.spans = append(b.spans, spans)
	}
	if len(b.spans) == 0 {
		return nil, fmt.Errorf("%s has none of %v holding a GUID: every post would be the same event", path, idFields)
	}
	return b, nil
}

// next returns a new distinct body.
func (b *bodies) next() []byte {
	out := bytes.Clone(b.template)
	for _, spans := range b.spans {
		id := uuid.NewString()
		for _, s := range spans {
			v := id
			if s.upper {
				v = strings.ToUpper(id)
			}
			copy(out[s.at:s.at+36], v)
		}
	}
	return out
}
