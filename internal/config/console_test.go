package config

import (
	"strings"
	"testing"
)

func TestLoadConsole_listens_on_loopback_by_default(t *testing.T) {
	c, err := LoadConsole(func(string) (string, bool) { return "", false })
	if err != nil || c.Addr != DefaultConsoleAddr {
		t.Fatalf("LoadConsole() = %+v, %v; want %s", c, err, DefaultConsoleAddr)
	}
}

func TestLoadConsole_refuses_a_public_address_without_a_secret(t *testing.T) {
	env := map[string]string{"DVRELAY_CONSOLE_ADDR": "0.0.0.0:7072"}
	_, err := LoadConsole(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "DVRELAY_CONSOLE_ADDR") {
		t.Fatalf("err = %v, want DVRELAY_CONSOLE_ADDR named", err)
	}
	env["DVRELAY_WEBHOOK_SECRET"] = "s3cret"
	if _, err := LoadConsole(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("with a secret: %v", err)
	}
}

func TestLoadConsole_off_turns_the_console_off(t *testing.T) {
	c, err := LoadConsole(func(k string) (string, bool) { return "off", k == "DVRELAY_CONSOLE_ADDR" })
	if err != nil || c.Addr != "" {
		t.Fatalf("LoadConsole() = %+v, %v; want no address", c, err)
	}
}
