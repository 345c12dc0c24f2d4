// Command loadgen is the load generator of BENCHMARKS.md. It posts distinct Dataverse events to
// an intake (dvrelay's, or the reference server's) in a closed loop (a fixed number of clients,
// for throughput) or an open loop (a fixed rate, for latency and overload), and writes what came
// back as JSON: accepted/s, latency percentiles, the count and latency of 503s, and the server
// process's CPU and memory. It also serves the slow downstream the worker benchmark calls, and
// prints the table BENCHMARKS.md shows from a directory of results. tools/bench.sh runs it all.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const usage = `usage:
  loadgen closed [flags]      N clients posting as fast as answers come back
  loadgen open [flags]        posts at a fixed rate, whatever the answers
  loadgen downstream [flags]  a downstream double answering after a fixed latency
  loadgen drain [flags]       release a holding downstream and time the worker's drain
  loadgen calls [flags]       a bare client calling the downstream: the worker's reference
  loadgen table DIR           print the benchmark tables from DIR's results
  loadgen ping URL            exit 0 when GET URL answers 200 (for scripts)
  loadgen field FILE NAME     print a result's numeric field, rounded (for scripts)
  loadgen window -dir DIR     fill a data dir's duplicate window, as a high rate leaves it

Run 'loadgen COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "closed", "open":
		err = runLoad(args[0], args[1:], stdout, stderr)
	case "downstream":
		err = runDownstream(args[1:], stderr)
	case "drain":
		err = runDrain(args[1:], stdout, stderr)
	case "calls":
		err = runCalls(args[1:], stdout, stderr)
	case "table":
		err = runTable(args[1:], stdout)
	case "ping":
		err = runPing(args[1:])
	case "field":
		err = runField(args[1:], stdout)
	case "window":
		err = runWindow(args[1:], stdout, stderr)
	case "-h", "help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "loadgen: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func runPing(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: loadgen ping URL")
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func runField(args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: loadgen field FILE NAME")
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	v, ok := m[args[1]].(float64)
	if !ok {
		return fmt.Errorf("%s has no numeric field %q", args[0], args[1])
	}
	_, err = fmt.Fprintf(stdout, "%.0f\n", v)
	return err
}
