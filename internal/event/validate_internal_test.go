package event

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
)

// Every pattern in the embedded schemas must have a human description, or a failing field would
// be reported with a raw regular expression.
func TestDescribePattern_knows_every_schema_pattern(t *testing.T) {
	files, err := fs.Glob(schemaFiles, "schema/*.json")
	if err != nil || len(files) != 3 {
		t.Fatalf("schemas: %v %v", files, err)
	}
	for _, f := range files {
		raw, _ := schemaFiles.ReadFile(f)
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, pattern := range collectPatterns(doc) {
			if d := describePattern(pattern); strings.HasPrefix(d, "does not match") {
				t.Errorf("%s: pattern %s has no description", f, pattern)
			}
		}
	}
}

func collectPatterns(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if s, ok := child.(string); ok && k == "pattern" {
				switch s {
				case "^Money:", "^OptionSetValue:", "^EntityReference:", "^EntityCollection:", "^Entity:", "^Relationship:":
					continue // dispatch conditions, never reported
				}
				out = append(out, s)
			}
			out = append(out, collectPatterns(child)...)
		}
	case []any:
		for _, child := range v {
			out = append(out, collectPatterns(child)...)
		}
	}
	return out
}
