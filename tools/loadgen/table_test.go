package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeResults writes each result as bench.sh's runs leave them: one JSON file per run.
func writeResults(t *testing.T, results ...result) string {
	t.Helper()
	dir := t.TempDir()
	for _, r := range results {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, r.Label+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func collapseResult(run string, accepted, refusedP99 float64) result {
	return result{Label: prefixCollapse + run, Mode: "open", Rate: 9000, Seconds: 7, WarmupSeconds: 3,
		AcceptedPerSec: accepted, Overloaded: 1000, Refused: latencies{Count: 1000, P99: refusedP99}}
}

func TestTable_counts_the_runs_at_twice_capacity_that_held_to_the_target(t *testing.T) {
	dir := writeResults(t,
		collapseResult("1", 4000, 20),   // 89% of capacity, fast 503s: held
		collapseResult("2", 300, 20),    // collapsed
		collapseResult("10", 4000, 250), // enough accepted, but the excess waited
		collapseResult("3", 3500, 20),   // 78% of capacity: below 80%
	)
	var out bytes.Buffer
	if err := runTable([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "1 of 4 runs held") {
		t.Errorf("summary missing or wrong:\n%s", got)
	}
	// Rows in the order the runs ran (10 after 3, not after 1), each with its verdict.
	var rows []string
	for _, line := range strings.Split(got, "\n") {
		if len(line) > 2 && strings.HasPrefix(line, "| ") && line[2] >= '0' && line[2] <= '9' {
			rows = append(rows, line)
		}
	}
	want := []string{
		"| 1 | 4,000 | 89% | 20.0 ms | – | yes |",
		"| 2 | 300 | 7% | 20.0 ms | – | no |",
		"| 3 | 3,500 | 78% | 20.0 ms | – | no |",
		"| 10 | 4,000 | 89% | 250.0 ms | – | no |",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}

func TestTable_sets_each_round_on_a_full_window_beside_its_fresh_run(t *testing.T) {
	run := func(label string, perSec, kb float64) result {
		return result{Label: label, Mode: "closed", Clients: 32, Seconds: 10, WarmupSeconds: 3,
			AcceptedPerSec: perSec, ServerCPUMsPerAccepted: 0.25, ServerKBWrittenPerAccepted: kb}
	}
	dir := writeResults(t,
		run(prefixWindowFull+"10", 4100, 53.4),
		run(prefixWindowFresh+"2", 4900, 52.1),
		run(prefixWindowFull+"2", 4700, 53.0),
		run(prefixWindowFresh+"10", 4800, 51.9),
	)
	var out bytes.Buffer
	if err := runTable([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "| 2 |") || strings.HasPrefix(line, "| 10 |") {
			rows = append(rows, line)
		}
	}
	want := []string{
		"| 2 | fresh | 4,900 | 250 µs | 52.1 KB |",
		"| 2 | window full | 4,700 | 250 µs | 53.0 KB |",
		"| 10 | fresh | 4,800 | 250 µs | 51.9 KB |",
		"| 10 | window full | 4,100 | 250 µs | 53.4 KB |",
	}
	if len(rows) != len(want) {
		t.Fatalf("window rows:\n%s\nwant %d rows, round by round, fresh first", strings.Join(rows, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(rows[i], w) {
			t.Errorf("row %d = %q, want it to start %q", i, rows[i], w)
		}
	}
}
