package httpauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
)

func TestAuthorizer_accepts_every_rotated_secret_and_nothing_else(t *testing.T) {
	a := httpauth.New("X-Dvrelay-Secret", []byte("old"), []byte("new"))
	cases := []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"old secret", http.Header{"X-Dvrelay-Secret": {"old"}}, true},
		{"new secret", http.Header{"X-Dvrelay-Secret": {"new"}}, true},
		{"wrong secret", http.Header{"X-Dvrelay-Secret": {"nope"}}, false},
		{"a prefix of a secret", http.Header{"X-Dvrelay-Secret": {"ne"}}, false},
		{"empty header", http.Header{"X-Dvrelay-Secret": {""}}, false},
		{"missing header", http.Header{}, false},
		{"right secret in another header", http.Header{"Authorization": {"new"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.Allows(tc.header); got != tc.want {
				t.Errorf("Allows = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAuthorizer_without_secrets_lets_everyone_in(t *testing.T) {
	a := httpauth.New("x-dvrelay-secret", nil, []byte(""))
	if a.Required() || !a.Allows(http.Header{}) {
		t.Errorf("Required = %v, Allows = %v; want an open door", a.Required(), a.Allows(http.Header{}))
	}
}

func TestRequire_refuses_with_a_401_problem_and_does_not_call_the_route(t *testing.T) {
	called := false
	h := httpauth.New("x-dvrelay-secret", []byte("s3cret")).Require(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/deadletters", nil))
	if called || rec.Code != http.StatusUnauthorized || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("called %v, status %d, Content-Type %q", called, rec.Code, rec.Header().Get("Content-Type"))
	}
}
