package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// defaultIntakeURL is the intake of a `handler serve` started with its default --addr.
const defaultIntakeURL = "http://127.0.0.1:7071/api/dataverse/webhook"

// postFlags are `handler post`'s flags and arguments.
type postFlags struct {
	url    string
	header http.Header // -H, sent on every request; wins over the defaults
	files  []string
}

// runPost posts event files to a running intake, as Dataverse would: the quickest way to see
// the flow with nothing but Go installed (no curl needed).
func runPost(ctx context.Context, args []string, lookup config.Lookup, stdout, stderr io.Writer) int {
	flags, code, ok := parsePost(args, stderr)
	if !ok {
		return code
	}
	if len(flags.files) == 0 {
		fmt.Fprintln(stderr, "handler post: name one or more event files, e.g. samples/opportunity-update.json")
		return 2
	}
	cfg, ok := loadConfig(lookup, "handler post", stderr)
	if !ok {
		return 2
	}
	code = 0
	for _, file := range flags.files {
		status, body, err := postFile(ctx, flags.url, file, cfg, flags.header)
		var dial *net.OpError
		if errors.As(err, &dial) && dial.Op == "dial" {
			// Every other file would fail the same way; one clear message is enough.
			fmt.Fprintf(stderr, "handler post %s: nothing answers at %s (%v).\n"+
				"Is 'handler serve' running? If it listens elsewhere, name its intake with --url, e.g.\n"+
				"  handler post --url http://127.0.0.1:8080/api/dataverse/webhook %s\n", file, flags.url, dial.Err, file)
			return 1
		}
		if err != nil {
			fmt.Fprintf(stderr, "handler post %s: %v\n", file, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: %d %s\n", file, status, strings.TrimSpace(body))
		if status == http.StatusUnauthorized {
			// Every other file would be refused the same way.
			fmt.Fprint(stderr, unauthorizedHint(file, cfg, flags.header))
			return 1
		}
		if duplicateAnswer(status, body) {
			fmt.Fprintf(stdout, "%s: duplicate: the queue already held this event (same EventId within DVRELAY_DUPLICATE_WINDOW), so nothing new runs; edit the file's ids or wait out the window to see it run again\n", file)
		}
		if status/100 != 2 {
			code = 1
		}
	}
	return code
}

// parsePost reads the flags, which may come before, between or after the files. When ok is
// false the command is over, with exit code code (0 after -h).
func parsePost(args []string, stderr io.Writer) (flags postFlags, code int, ok bool) {
	flags.header = http.Header{}
	fs := flag.NewFlagSet("post", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&flags.url, "url", defaultIntakeURL, "intake URL")
	fs.Func("H", "a header to send, 'Name: value' (repeatable), e.g. -H 'x-ms-dynamics-msg-size-exceeded: true'", func(v string) error {
		name, value, found := strings.Cut(v, ":")
		name = strings.TrimSpace(name)
		if !found || !validHeaderName(name) {
			return fmt.Errorf("%q is not 'Name: value'", v)
		}
		flags.header.Add(name, strings.TrimSpace(value))
		return nil
	})
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return flags, 0, false
			}
			return flags, 2, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return flags, 0, true
		}
		// Parse stopped at a file, or after "--", past which everything is a file.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			flags.files = append(flags.files, rest...)
			return flags, 0, true
		}
		flags.files = append(flags.files, rest[0])
		args = rest[1:]
	}
}

// validHeaderName reports whether name is an HTTP token (RFC 9110 5.1).
func validHeaderName(name string) bool {
	return name != "" && !strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// postFile sends one event file with the first configured webhook secret, if any, and header.
func postFile(ctx context.Context, url, file string, cfg config.Config, header http.Header) (int, string, error) {
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
	for name, values := range header {
		req.Header[name] = values
	}
	// Dataverse waits 60 s for a webhook; give the intake a little more before giving up.
	client := outbound.NewClient(outbound.Options{Timeout: 70 * time.Second})
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", outbound.RedactError(err)
	}
	defer resp.Body.Close()
	b, _, err := outbound.ReadLimited(resp.Body, 1<<20)
	return resp.StatusCode, string(b), err
}

// unauthorizedHint says which secret the intake wanted and what post sent: the secret is the
// first of DVRELAY_WEBHOOK_SECRET, in DVRELAY_WEBHOOK_SECRET_HEADER, as handler serve reads them.
func unauthorizedHint(file string, cfg config.Config, header http.Header) string {
	sent := "sent no secret: DVRELAY_WEBHOOK_SECRET is not set here"
	switch {
	case header.Get(cfg.SecretHeader) != "":
		sent = "sent the " + cfg.SecretHeader + " given with -H"
	case len(cfg.WebhookSecrets) > 0:
		sent = "sent the first DVRELAY_WEBHOOK_SECRET in " + cfg.SecretHeader
	}
	return fmt.Sprintf("handler post %s: the intake refused the secret (401); post %s.\n"+
		"Run 'handler post' with the DVRELAY_WEBHOOK_SECRET (and DVRELAY_WEBHOOK_SECRET_HEADER) that handler serve was started with, e.g.\n"+
		"  DVRELAY_WEBHOOK_SECRET=<the serve's secret> handler post %s\n", file, sent, file)
}

// duplicateAnswer reports whether the intake's 202 says the queue dropped the event as a
// duplicate.
func duplicateAnswer(status int, body string) bool {
	var a struct {
		Duplicate bool `json:"duplicate"`
	}
	return status == http.StatusAccepted && json.Unmarshal([]byte(body), &a) == nil && a.Duplicate
}
