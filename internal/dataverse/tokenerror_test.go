package dataverse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/dvrelay/dvrelay/internal/dataverse"
)

// Not parallel: the managed identity source is detected from process environment variables.
func TestClient_a_refused_token_names_status_and_error_code_but_not_the_endpoints_answer(t *testing.T) {
	const leak = "7d0c2a44-1b9e-4f3a-9c55-0e2f6a1b3c4d for jane.doe@contoso.com"
	tests := []struct {
		name     string
		body     string
		status   int
		wantCode string
	}{
		{"OAuth error", `{"error":"invalid_request","error_description":"Identity ` + leak + ` not found"}`, http.StatusBadRequest, "invalid_request"},
		{"App Service shape", `{"statusCode":400,"message":"Unable to load the identity ` + leak + `","correlationId":"c"}`, http.StatusBadRequest, ""},
		{"error object", `{"error":{"code":"IdentityNotFound","message":"` + leak + `"}}`, http.StatusNotFound, "IdentityNotFound"},
		{"a code that is not a code", `{"error":"` + leak + `"}`, http.StatusBadRequest, ""},
		{"not JSON", `<html>` + leak + `</html>`, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer mi.Close()
			t.Setenv("IDENTITY_ENDPOINT", mi.URL+"/msi/token")
			t.Setenv("IDENTITY_HEADER", "header-secret")
			cred, err := azidentity.NewManagedIdentityCredential(nil)
			if err != nil {
				t.Fatal(err)
			}
			api := &webAPI{}
			c := newClient(t, api, cred)

			err = c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"})

			var tokErr *dataverse.TokenError
			if !errors.As(err, &tokErr) {
				t.Fatalf("Update error = %v, want a *dataverse.TokenError", err)
			}
			if tokErr.Status != tt.status || tokErr.Code != tt.wantCode {
				t.Errorf("TokenError = %+v, want status %d code %q", tokErr, tt.status, tt.wantCode)
			}
			msg := err.Error()
			if !strings.Contains(msg, http.StatusText(tt.status)) || (tt.wantCode != "" && !strings.Contains(msg, tt.wantCode)) {
				t.Errorf("error %q does not name the status and the code", msg)
			}
			for _, s := range []string{"jane.doe", "7d0c2a44", "header-secret", mi.URL} {
				if strings.Contains(msg, s) {
					t.Errorf("error %q carries %q from the identity endpoint's answer", msg, s)
				}
			}
			if len(api.patches) != 0 {
				t.Error("PATCH sent without a token")
			}
		})
	}
}
