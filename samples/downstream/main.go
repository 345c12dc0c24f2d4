// Command downstream is a stand-in for the credit scoring API and the ERP, for trying dvrelay
// on one machine. It is sample code, not part of dvrelay: it prints every call it gets (the
// Idempotency-Key and X-Correlation-ID headers dvrelay sends) and answers the credit route with a
// score derived from the record id, so the same record always gets the same score.
//
//	go run ./samples/downstream            # listens on 127.0.0.1:7081
//	DVRELAY_CREDIT_URL=http://127.0.0.1:7081/credit DVRELAY_ERP_URL=http://127.0.0.1:7081/erp \
//	  go run ./handler serve --post samples/opportunity-update.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7081", "address to listen on")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))

	mux := http.NewServeMux()
	mux.HandleFunc("POST /credit", func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ RecordID string }
		if !decode(w, r, log, "credit", &ev) {
			return
		}
		h := fnv.New32a()
		_, _ = io.WriteString(h, ev.RecordID)
		writeJSON(w, map[string]any{"score": 300 + int(h.Sum32()%551)}) // 300–850, like a bureau score
	})
	mux.HandleFunc("POST /erp", func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ EventID string }
		if !decode(w, r, log, "erp", &ev) {
			return
		}
		writeJSON(w, map[string]any{"accepted": true, "reference": "ERP-" + ev.EventID})
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("downstream stand-in listening", "credit", "http://"+*addr+"/credit", "erp", "http://"+*addr+"/erp")
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "downstream:", err)
		os.Exit(1)
	}
}

// decode reads the event dvrelay posted and logs the call; it answers 400 to a body it cannot read.
func decode(w http.ResponseWriter, r *http.Request, log *slog.Logger, api string, into any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(into); err != nil {
		http.Error(w, `{"error":"body is not JSON"}`, http.StatusBadRequest)
		return false
	}
	log.Info("call", "api", api,
		"idempotencyKey", r.Header.Get("Idempotency-Key"),
		"correlationId", r.Header.Get("X-Correlation-ID"))
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
