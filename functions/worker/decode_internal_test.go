package worker

import "testing"

func TestSizeExceeded_reads_Dataverses_flag_unless_it_says_false(t *testing.T) {
	for _, c := range []struct {
		props map[string]any
		want  bool
	}{
		{nil, false},
		{map[string]any{"MessageMaxSizeExceeded": true}, true},
		{map[string]any{"MessageMaxSizeExceeded": "True"}, true},
		{map[string]any{"MessageMaxSizeExceeded": ""}, true},
		{map[string]any{"MessageMaxSizeExceeded": int64(1)}, true},
		{map[string]any{"MessageMaxSizeExceeded": false}, false},
		{map[string]any{"MessageMaxSizeExceeded": " false "}, false},
	} {
		if got := sizeExceeded(c.props); got != c.want {
			t.Errorf("sizeExceeded(%v) = %v", c.props, got)
		}
	}
}
