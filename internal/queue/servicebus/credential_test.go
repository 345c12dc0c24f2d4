package servicebus

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Not parallel: the managed identity source is detected from process environment variables.
func TestCredential_refuses_a_redirect_from_the_identity_endpoint(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no az to fall back on
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"} {
		t.Setenv(k, "") // restored after the test
		_ = os.Unsetenv(k)
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, clientID := range []string{"", "7d0c2a44-1b9e-4f3a-9c55-0e2f6a1b3c4d"} {
			t.Run(strconv.Itoa(status)+"/client id "+clientID, func(t *testing.T) {
				var asked, trapped atomic.Int32
				trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					trapped.Add(1)
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write([]byte(`{"access_token":"stolen-token","token_type":"Bearer","expires_on":"` +
						strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `"}`))
				}))
				defer trap.Close()
				redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					asked.Add(1)
					http.Redirect(w, r, trap.URL+r.URL.RequestURI(), status)
				}))
				defer redirector.Close()
				t.Setenv("IDENTITY_ENDPOINT", redirector.URL+"/msi/token")
				t.Setenv("IDENTITY_HEADER", "header-secret")

				cred, err := credential(clientID)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://servicebus.azure.net/.default"}})

				if err == nil || tok.Token != "" {
					t.Errorf("GetToken = %q, %v; want no token", tok.Token, err)
				}
				if asked.Load() == 0 {
					t.Errorf("the identity endpoint was never asked (err %v): the test proves nothing", err)
				}
				if n := trapped.Load(); n != 0 {
					t.Errorf("%d requests reached the redirect's target", n)
				}
			})
		}
	}
}
