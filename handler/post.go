package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/outbound"
)

// runPost posts event files to a running intake, as Dataverse would: the quickest way to see
// the flow with nothing but Go installed (no curl needed).
func runPost(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("post", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:7071/api/dataverse/webhook", "intake URL")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "handler post: name one or more event files, e.g. samples/opportunity-update.json")
		return 2
	}
	cfg, ok := loadConfig(lookup, "handler post", stderr)
	if !ok {
		return 2
	}
	code := 0
	for _, file := range fs.Args() {
		status, body, err := postFile(ctx, *url, file, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "handler post %s: %v\n", file, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: %d %s\n", file, status, strings.TrimSpace(body))
		if status/100 != 2 {
			code = 1
		}
	}
	return code
}

// postFile sends one event file with the first configured webhook secret, if any.
func postFile(ctx context.Context, url, file string, cfg config.Config) (int, string, error) {
	body, err := os.ReadFile(file)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if len(cfg.WebhookSecrets) > 0 {
		req.Header.Set(cfg.SecretHeader, cfg.WebhookSecrets[0])
	}
	// Dataverse waits 60 s for a webhook; give the intake a little more before giving up.
	client := outbound.NewClient(outbound.Options{Timeout: 70 * time.Second})
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _, err := outbound.ReadLimited(resp.Body, 1<<20)
	return resp.StatusCode, string(b), err
}
