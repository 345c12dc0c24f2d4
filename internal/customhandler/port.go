package customhandler

import (
	"net/http"
	"strconv"
	"strings"
)

// Port environment variables the host sets for the handler process. The legacy name is still
// set by current hosts and is the only one older ones set.
const (
	PortEnv       = "FUNCTIONS_CUSTOMHANDLER_PORT"
	LegacyPortEnv = "FUNCTIONS_HTTPWORKER_PORT"
)

// Port returns the port the host expects the handler on, and false when the process was not
// started by a Functions host (neither variable holds a port number). lookup is os.LookupEnv in
// production.
func Port(lookup func(string) (string, bool)) (string, bool) {
	for _, name := range [...]string{PortEnv, LegacyPortEnv} {
		v, ok := lookup(name)
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 65535 {
			return v, true
		}
	}
	return "", false
}

// Ready answers the host's readiness probe (GET /, polled every 25 ms until any answer comes)
// at once, without touching any dependency: the host only wants to know the port is served.
func Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
}
