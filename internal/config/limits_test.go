package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
)

func TestLoad_bounds_the_intake_by_default(t *testing.T) {
	c, err := config.Load(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxInFlight != config.DefaultMaxInFlight || c.MaxConnections > config.DefaultMaxConnections {
		t.Errorf("MaxInFlight %d, MaxConnections %d", c.MaxInFlight, c.MaxConnections)
	}
	if c.MaxConnections <= c.MaxInFlight {
		t.Errorf("the default connection cap %d leaves no room to answer past the in-flight bound %d", c.MaxConnections, c.MaxInFlight)
	}
	if c.ReadHeaderTimeout != 5*time.Second || c.ReadTimeout != 15*time.Second {
		t.Errorf("ReadHeaderTimeout %s, ReadTimeout %s", c.ReadHeaderTimeout, c.ReadTimeout)
	}
}

func TestLoad_reads_the_intake_bounds(t *testing.T) {
	c, err := config.Load(lookupFrom(map[string]string{
		"DVRELAY_MAX_INFLIGHT":        "8",
		"DVRELAY_MAX_CONNECTIONS":     "40",
		"DVRELAY_READ_HEADER_TIMEOUT": "1s",
		"DVRELAY_READ_TIMEOUT":        "2s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxInFlight != 8 || c.MaxConnections != 40 || c.ReadHeaderTimeout != time.Second || c.ReadTimeout != 2*time.Second {
		t.Errorf("%d %d %s %s", c.MaxInFlight, c.MaxConnections, c.ReadHeaderTimeout, c.ReadTimeout)
	}
}

func TestLoad_names_bad_intake_bounds(t *testing.T) {
	_, err := config.Load(lookupFrom(map[string]string{
		"DVRELAY_MAX_INFLIGHT":        "0",
		"DVRELAY_MAX_CONNECTIONS":     "lots",
		"DVRELAY_READ_HEADER_TIMEOUT": "-1s",
		"DVRELAY_READ_TIMEOUT":        "soon",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`DVRELAY_MAX_INFLIGHT: "0"`, `DVRELAY_MAX_CONNECTIONS: "lots"`,
		`DVRELAY_READ_HEADER_TIMEOUT: "-1s"`, `DVRELAY_READ_TIMEOUT: "soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLoad_refuses_a_connection_cap_at_or_below_the_in_flight_bound(t *testing.T) {
	// Callers past the cap wait unanswered for a connection; the in-flight bound can only turn
	// the excess away promptly when there are connections to spare to tell them.
	_, err := config.Load(lookupFrom(map[string]string{"DVRELAY_MAX_INFLIGHT": "64", "DVRELAY_MAX_CONNECTIONS": "64"}))
	if err == nil || !strings.Contains(err.Error(), "DVRELAY_MAX_CONNECTIONS:") {
		t.Fatalf("err = %v", err)
	}
}
