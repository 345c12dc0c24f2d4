package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackageCommand_refuses_a_routes_file_serve_would_refuse_and_lists_its_errors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dvrelay.zip")
	var stdout, stderr bytes.Buffer

	code := runPackage(context.Background(), []string{"--routes", "handler/testdata/routes-typo.json", "--out", out},
		func(string) (string, bool) { return "", false }, &stdout, &stderr)

	if code == 0 {
		t.Fatalf("exit 0 for a routes file with three errors\n%s", stderr.String())
	}
	for _, want := range []string{
		"3 problems",
		`routes-typo.json:7:`, `type: unknown step type "htttp"`,
		`routes-typo.json:8:`, `timeout "ten seconds" is not a duration`,
		`routes-typo.json:9:`, "used by an earlier step",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a zip was written for a refused routes file: %v", err)
	}
}

func TestPackageCommand_help_states_each_default_once(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runPackage(context.Background(), []string{"-h"}, func(string) (string, bool) { return "", false }, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stderr.String()
	i := strings.Index(help, "-routes")
	if i < 0 {
		t.Fatalf("no -routes in:\n%s", help)
	}
	if n := strings.Count(strings.ToLower(help[i:]), "default"); n != 1 {
		t.Errorf("-routes states its default %d times:\n%s", n, help[i:])
	}
}
