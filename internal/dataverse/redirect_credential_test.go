package dataverse_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

var redirectStatuses = []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}

// redirectTrap is a token endpoint that answers every request with a redirect to a trap, which
// would hand out a token to whoever reached it.
type redirectTrap struct {
	redirector *httptest.Server
	trap       *httptest.Server
	asked      atomic.Int32 // requests the redirector answered
	trapped    atomic.Int32 // requests that reached the trap
}

func newRedirectTrap(t *testing.T, status int, tlsRedirector bool) *redirectTrap {
	t.Helper()
	rt := &redirectTrap{}
	rt.trap = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.trapped.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "stolen-token", "token_type": "Bearer", "expires_in": 3600,
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "resource": r.URL.Query().Get("resource"),
		})
	}))
	t.Cleanup(rt.trap.Close)
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.asked.Add(1)
		http.Redirect(w, r, rt.trap.URL+r.URL.RequestURI(), status)
	})
	if tlsRedirector {
		rt.redirector = httptest.NewTLSServer(redirect)
	} else {
		rt.redirector = httptest.NewServer(redirect)
	}
	t.Cleanup(rt.redirector.Close)
	return rt
}

// authorityClient is outbound's client with a transport that sends every request for any host
// but the trap to the TLS redirector, so an app registration's sign-in at
// login.microsoftonline.com meets the redirect. Only the transport is the test's: the redirect
// policy is outbound's.
func (rt *redirectTrap) authorityClient() *http.Client {
	c := outbound.NewClient(outbound.Options{})
	trapAddr := rt.trap.Listener.Addr().String()
	redirectorAddr := rt.redirector.Listener.Addr().String()
	var d net.Dialer
	c.Transport = &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test's own server
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != trapAddr {
				addr = redirectorAddr
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	return c
}

// check asks cred for a token and fails the test unless the redirect was refused: the
// redirector was asked, nothing reached the trap, no token came back, and quickly (the refusal
// is not retried).
func (rt *redirectTrap) check(t *testing.T, cred azcore.TokenCredential) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://contoso.crm.dynamics.com/.default"}})
	if err == nil || tok.Token != "" {
		t.Errorf("GetToken = %q, %v; want no token", tok.Token, err)
	}
	if n := rt.asked.Load(); n == 0 {
		t.Errorf("the token endpoint was never asked (err %v): the test proves nothing", err)
	}
	if n := rt.trapped.Load(); n != 0 {
		t.Errorf("%d requests reached the redirect's target", n)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s to fail: the refused redirect was retried", took)
	}
}

// Not parallel: the managed identity source is detected from process environment variables.
func TestNewCredential_managed_identity_refuses_a_redirect_from_the_identity_endpoint(t *testing.T) {
	for _, status := range redirectStatuses {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			rt := newRedirectTrap(t, status, false)
			t.Setenv("IDENTITY_ENDPOINT", rt.redirector.URL+"/msi/token")
			t.Setenv("IDENTITY_HEADER", "header-secret")
			cred, err := dataverse.NewCredential(identityFrom(t, os.LookupEnv), "")
			if err != nil {
				t.Fatal(err)
			}
			rt.check(t, cred)

			// Nor does the worker's Dataverse client send anything with a token from elsewhere.
			api := &webAPI{}
			c := newClient(t, api, cred)
			if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err == nil {
				t.Error("Update succeeded")
			}
			if len(api.patches) != 0 || api.metaCalls != 0 {
				t.Errorf("the Web API got %d PATCHes and %d metadata calls", len(api.patches), api.metaCalls)
			}
			if n := rt.trapped.Load(); n != 0 {
				t.Errorf("%d requests reached the redirect's target", n)
			}
		})
	}
}

func TestNewCredential_client_secret_refuses_a_redirect_from_the_authority(t *testing.T) {
	for _, status := range redirectStatuses {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			rt := newRedirectTrap(t, status, true)
			cred, err := dataverse.NewCredential(dataverse.Identity{
				TenantID: "00000000-0000-0000-0000-000000000001", ClientID: "app", ClientSecret: "app-secret",
				HTTPClient: rt.authorityClient(),
			}, "")
			if err != nil {
				t.Fatal(err)
			}
			rt.check(t, cred)
		})
	}
}

// Not parallel: DefaultAzureCredential reads its sources from process environment variables.
func TestNewCredential_default_credential_refuses_a_redirect_from_the_authority(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "federated-token")
	if err := os.WriteFile(tokenFile, []byte("federated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	sources := map[string]map[string]string{
		"environment client secret": {"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "app", "AZURE_CLIENT_SECRET": "app-secret"},
		"workload identity":         {"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "app", "AZURE_FEDERATED_TOKEN_FILE": tokenFile},
	}
	for name, env := range sources {
		for _, status := range redirectStatuses {
			t.Run(name+"/"+strconv.Itoa(status), func(t *testing.T) {
				for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"} {
					t.Setenv(k, env[k]) // restored after the test
					if _, ok := env[k]; !ok {
						_ = os.Unsetenv(k)
					}
				}
				rt := newRedirectTrap(t, status, true)
				// The settings dvrelay reads are empty: the environment is DefaultAzureCredential's.
				cred, err := dataverse.NewCredential(dataverse.Identity{HTTPClient: rt.authorityClient()}, "")
				if err != nil {
					t.Fatal(err)
				}
				rt.check(t, cred)
			})
		}
	}
}

// Not parallel: the managed identity source is detected from process environment variables.
func TestNewOperatorCredential_refuses_a_redirect_from_the_identity_endpoint_or_the_authority(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no az: the chain ends with the refused source's error
	for _, status := range redirectStatuses {
		t.Run("managed identity/"+strconv.Itoa(status), func(t *testing.T) {
			rt := newRedirectTrap(t, status, false)
			t.Setenv("IDENTITY_ENDPOINT", rt.redirector.URL+"/msi/token")
			t.Setenv("IDENTITY_HEADER", "header-secret")
			cred, err := dataverse.NewOperatorCredential(dataverse.OperatorIdentity{ManagedIdentity: true})
			if err != nil {
				t.Fatal(err)
			}
			rt.check(t, cred)
		})
		t.Run("app registration/"+strconv.Itoa(status), func(t *testing.T) {
			rt := newRedirectTrap(t, status, true)
			cred, err := dataverse.NewOperatorCredential(dataverse.OperatorIdentity{
				TenantID: "00000000-0000-0000-0000-000000000001", ClientID: "app", ClientSecret: "app-secret",
				HTTPClient: rt.authorityClient(),
			})
			if err != nil {
				t.Fatal(err)
			}
			rt.check(t, cred)
		})
	}
}
