package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersion_names_the_build_and_exits_0(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, mapEnv(nil), &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d\n%s", arg, code, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "handler ") || !strings.Contains(stdout.String(), "go1.") {
			t.Errorf("%s: %q", arg, stdout.String())
		}
	}
}
