package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// DefaultConsoleAddr is where `handler serve` serves the support console unless told otherwise:
// loopback, next to the intake's default port, so it is reachable only from this machine.
const DefaultConsoleAddr = "127.0.0.1:7072"

// Console is the support console's settings. They are read apart from Config so the console's
// settings sit in one small file.
type Console struct {
	// Addr is the console's own listen address (DVRELAY_CONSOLE_ADDR); empty when set to "off".
	Addr string
}

// LoadConsole reads the console's settings. A listen address reachable from other machines
// needs a support secret (DVRELAY_WEBHOOK_SECRET): the console is a door into business data.
func LoadConsole(lookup Lookup) (Console, error) {
	r := reader{lookup: lookup}
	c := Console{Addr: r.str("DVRELAY_CONSOLE_ADDR", DefaultConsoleAddr)}
	secrets := r.secrets("DVRELAY_WEBHOOK_SECRET")
	if strings.EqualFold(c.Addr, "off") {
		c.Addr = ""
		return c, errors.Join(r.errs...)
	}
	host, _, err := net.SplitHostPort(c.Addr)
	switch {
	case err != nil:
		r.fail("DVRELAY_CONSOLE_ADDR", fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:7072), nor off", c.Addr))
	case !loopbackHost(host) && len(secrets) == 0:
		r.fail("DVRELAY_CONSOLE_ADDR", fmt.Sprintf("%q is reachable from other machines, so DVRELAY_WEBHOOK_SECRET must be set "+
			"(support signs in with it); or listen on 127.0.0.1", c.Addr))
	}
	return c, errors.Join(r.errs...)
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
