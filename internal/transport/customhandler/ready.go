package customhandler

import (
	"net/http"
)

// Ready answers the host's readiness probe (GET /, polled every 25 ms until any answer comes)
// at once, without touching any dependency: the host only wants to know the port is served.
func Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
}
