package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/event"
)

func TestNewWorker_with_DVRELAY_STRICT_ROUTES_refuses_to_start_with_a_skipped_step(t *testing.T) {
	routes := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(routes, []byte(`{"routes":[{"name":"erp-sync","steps":[{"name":"erp","type":"http","url":"${DVRELAY_ERP_URL}"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	parser, err := event.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	for strict, wantErr := range map[string]bool{"": false, "false": false, "true": true} {
		env := map[string]string{"DVRELAY_ROUTES": routes, "DVRELAY_STRICT_ROUTES": strict}
		cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok && v != "" })
		if err != nil {
			t.Fatal(err)
		}
		_, err = newWorker(context.Background(), cfg, parser, slog.New(slog.DiscardHandler), nil)
		if gotErr := err != nil; gotErr != wantErr || (wantErr && !strings.Contains(err.Error(), `step 1 ("erp"): setting DVRELAY_ERP_URL is not set`)) {
			t.Errorf("DVRELAY_STRICT_ROUTES=%q: err = %v, want error %v", strict, err, wantErr)
		}
	}
}
