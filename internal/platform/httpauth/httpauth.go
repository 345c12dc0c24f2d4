// Package httpauth checks the shared secret a caller sends in a header (Dataverse's HttpHeader
// authentication option). The intake and the admin routes use the same Authorizer, so both
// compare in constant time, both accept every configured secret during a rotation, and both
// refuse with the same answer.
package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/dvrelay/dvrelay/internal/platform/problem"
)

// Authorizer accepts a request whose header holds one of the configured secrets. It keeps only
// their digests. It is safe for concurrent use.
type Authorizer struct {
	header string
	hashes [][sha256.Size]byte
}

// New accepts any of secrets in header. More than one secret lets a secret be rotated without
// downtime (add the new one, update the caller, drop the old one); empty secrets are ignored,
// and with none the check is off.
func New(header string, secrets ...[]byte) *Authorizer {
	a := &Authorizer{header: header}
	for _, s := range secrets {
		if len(s) > 0 {
			a.hashes = append(a.hashes, sha256.Sum256(s))
		}
	}
	return a
}

// Required reports whether any secret is configured, that is whether the check is on.
func (a *Authorizer) Required() bool { return len(a.hashes) > 0 }

// Header is the header the secret is expected in.
func (a *Authorizer) Header() string { return a.header }

// Allows reports whether h carries one of the secrets, or whether the check is off. Digests
// are compared rather than the secrets, so the comparison is fixed-length and the timing shows
// neither a secret's length nor which one matched; every digest is compared, whatever the
// earlier results.
func (a *Authorizer) Allows(h http.Header) bool {
	if !a.Required() {
		return true
	}
	got := h.Get(a.header)
	sum := sha256.Sum256([]byte(got))
	match := 0
	for i := range a.hashes {
		match |= subtle.ConstantTimeCompare(sum[:], a.hashes[i][:])
	}
	return match == 1 && got != ""
}

// Refusal is the answer to a request that Allows refused, on every route.
func Refusal() problem.Details {
	return problem.New(http.StatusUnauthorized, "unauthorized", "Unauthorized", "missing or wrong webhook secret")
}

// Require serves next only to requests that Allows accepts; others get Refusal.
func (a *Authorizer) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Allows(r.Header) {
			problem.Write(w, Refusal())
			return
		}
		next.ServeHTTP(w, r)
	})
}
