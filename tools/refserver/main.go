// Command refserver is the reference server BENCHMARKS.md measures dvrelay's intake against:
// what the intake's work costs when written plainly with the same library and schema. It decodes
// each body with encoding/json, validates the decoded value with gojsonschema (NewRawLoader)
// against the repository's RemoteExecutionContext schema, and, unless -durable=false, appends
// it to a file with a group commit: concurrent requests share one write and one fsync, and each
// is answered 202 only after the fsync that covers it (R2). With -durable=false it answers after
// validation (R1). With -lean it parses and checks with dvrelay's own parser, writes the
// canonical event and appends that with the same group commit (R3, see lean.go).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/xeipuuv/gojsonschema"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "refserver:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("refserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7072", "address to listen on")
	schemaPath := fs.String("schema", "internal/event/schema/remote-execution-context.schema.json", "JSON Schema every body is validated against")
	dir := fs.String("dir", "", "directory of the durable log (default: a new temporary directory)")
	durable := fs.Bool("durable", true, "append each accepted body to the log and fsync before answering (R2); false is R1")
	maxBody := fs.Int64("max-body", 1<<20, "body limit in bytes")
	lean := fs.Bool("lean", false, "parse and check with dvrelay's parser and append the canonical event (R3); implies -durable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*schemaPath)
	if err != nil {
		return err
	}
	schema, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		return fmt.Errorf("compile %s: %w", *schemaPath, err)
	}
	s := &server{schema: schema, maxBody: *maxBody}
	if *lean {
		if s.lean, err = newLean(); err != nil {
			return err
		}
	}
	if *durable || *lean {
		if *dir == "" {
			if *dir, err = os.MkdirTemp("", "refserver-"); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(filepath.Join(*dir, "events.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		s.log = newGroupLog(f)
	}
	srv := &http.Server{Addr: *addr, Handler: s, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(stderr, "", 0)}
	fmt.Fprintf(stderr, "refserver on %s, durable %v, lean %v\n", *addr, *durable || *lean, *lean)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type server struct {
	schema  *gojsonschema.Schema
	maxBody int64
	log     *groupLog // nil: R1, no durable write
	lean    *lean     // R3, when set
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		return // 200: up
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil || int64(len(body)) > s.maxBody {
		http.Error(w, "unreadable or too large", http.StatusBadRequest)
		return
	}
	if s.lean != nil {
		canonical, err := s.lean.canonical(body, time.Now())
		if err != nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		body = canonical
	} else if !s.valid(w, body) {
		return
	}
	if s.log != nil {
		if err := s.log.append(body); err != nil {
			http.Error(w, "not stored", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"ok":true}`)
}

// valid is R1's and R2's check: decode, then validate the decoded value against the schema.
func (s *server) valid(w http.ResponseWriter, body []byte) bool {
	// Numbers as json.Number, the form gojsonschema's own loaders give its validator.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return false
	}
	if _, ok := v.(map[string]any); !ok {
		http.Error(w, "not a JSON object", http.StatusBadRequest)
		return false
	}
	res, err := s.schema.Validate(gojsonschema.NewRawLoader(v))
	if err != nil || !res.Valid() {
		http.Error(w, "invalid", http.StatusBadRequest)
		return false
	}
	return true
}

// groupLog appends records to a file with group commit: one goroutine writes every record that
// is waiting, fsyncs once, and then answers all of their writers.
type groupLog struct {
	pending chan write
}

type write struct {
	data []byte
	done chan error
}

func newGroupLog(f *os.File) *groupLog {
	g := &groupLog{pending: make(chan write, 4096)}
	go g.commit(f)
	return g
}

func (g *groupLog) append(data []byte) error {
	done := make(chan error, 1)
	g.pending <- write{data: data, done: done}
	return <-done
}

func (g *groupLog) commit(f *os.File) {
	w := bufio.NewWriterSize(f, 1<<20)
	var batch []write
	for first := range g.pending {
		batch = append(batch[:0], first)
	more:
		for {
			select {
			case next := <-g.pending:
				batch = append(batch, next)
			default:
				break more
			}
		}
		var err error
		for _, b := range batch {
			var n [4]byte
			binary.LittleEndian.PutUint32(n[:], uint32(len(b.data)))
			_, _ = w.Write(n[:])
			_, _ = w.Write(b.data)
		}
		if err = w.Flush(); err == nil {
			err = f.Sync()
		}
		for _, b := range batch {
			b.done <- err
		}
	}
}
