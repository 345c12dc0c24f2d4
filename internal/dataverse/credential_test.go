package dataverse_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/dataverse"
)

// managedIdentityEndpoint is a double of the App Service / Functions identity endpoint
// (IDENTITY_ENDPOINT + IDENTITY_HEADER, api-version 2019-08-01), recording what it was asked.
type managedIdentityEndpoint struct {
	mu       sync.Mutex
	requests []*http.Request
}

func (m *managedIdentityEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.requests = append(m.requests, r)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"access_token": "mi-token-abc",
		"expires_on":   strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
		"resource":     r.URL.Query().Get("resource"),
		"token_type":   "Bearer",
	})
}

// Not parallel: the managed identity source is detected from process environment variables.
func TestNewCredential_uses_the_functions_managed_identity_endpoint(t *testing.T) {
	mi := &managedIdentityEndpoint{}
	miSrv := httptest.NewServer(mi)
	defer miSrv.Close()
	t.Setenv("IDENTITY_ENDPOINT", miSrv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "header-secret")

	cred, err := dataverse.NewCredential(identityFrom(t, os.LookupEnv), "")
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	if _, ok := cred.(*azidentity.ManagedIdentityCredential); !ok {
		t.Fatalf("credential = %T, want *azidentity.ManagedIdentityCredential", cred)
	}

	api := &webAPI{}
	c := newClient(t, api, cred)
	for range 2 {
		if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}

	if got := api.patches[0].Header.Get("Authorization"); got != "Bearer mi-token-abc" {
		t.Errorf("Authorization = %q, want the managed identity token", got)
	}
	if len(mi.requests) != 1 {
		t.Fatalf("identity endpoint asked %d times, want 1 (token cached)", len(mi.requests))
	}
	req := mi.requests[0]
	if got := req.Header.Get("X-IDENTITY-HEADER"); got != "header-secret" {
		t.Errorf("X-IDENTITY-HEADER = %q, want the IDENTITY_HEADER value", got)
	}
	if got, want := req.URL.Query().Get("resource"), "http://"+api.patches[0].Host; got != want {
		t.Errorf("resource = %q, want %q (the environment URL)", got, want)
	}
	if got := req.URL.Query().Get("api-version"); got != "2019-08-01" {
		t.Errorf("api-version = %q, want 2019-08-01", got)
	}
}

// Not parallel: the managed identity source is detected from process environment variables.
func TestNewCredential_asks_for_the_user_assigned_identity_named_by_AZURE_CLIENT_ID(t *testing.T) {
	mi := &managedIdentityEndpoint{}
	miSrv := httptest.NewServer(mi)
	defer miSrv.Close()
	t.Setenv("IDENTITY_ENDPOINT", miSrv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "header-secret")
	// A Function App with only a user-assigned identity (as infra/ deploys it) has no
	// system-assigned one to fall back on: asking without a client id fails every token.
	const identity = "7d0c2a44-1b9e-4f3a-9c55-0e2f6a1b3c4d"
	lookup := func(k string) (string, bool) {
		if k == "AZURE_CLIENT_ID" {
			return identity, true
		}
		return os.LookupEnv(k)
	}

	cred, err := dataverse.NewCredential(identityFrom(t, lookup), "")
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	c := newClient(t, &webAPI{}, cred)
	if err := c.Update(context.Background(), "opportunity", recordID, map[string]any{"name": "x"}); err != nil {
		t.Fatalf("Update: %v", err)
	}

	if len(mi.requests) != 1 {
		t.Fatalf("identity endpoint asked %d times, want 1", len(mi.requests))
	}
	if got := mi.requests[0].URL.Query().Get("client_id"); got != identity {
		t.Errorf("client_id = %q, want %q (AZURE_CLIENT_ID)", got, identity)
	}
}

func TestNewCredential_picks_by_environment(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want any
	}{
		{"client secret", map[string]string{"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "app", "AZURE_CLIENT_SECRET": "s"}, &azidentity.ClientSecretCredential{}},
		// On Azure IDENTITY_ENDPOINT is always set; an app registration configured on purpose
		// (the application user Dataverse knows) must still win, as docs/settings.md promises.
		{"client secret on a Function App", map[string]string{"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token", "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "app", "AZURE_CLIENT_SECRET": "s"}, &azidentity.ClientSecretCredential{}},
		{"nothing set", map[string]string{}, &azidentity.DefaultAzureCredential{}},
		{"secret missing", map[string]string{"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "app"}, &azidentity.DefaultAzureCredential{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			cred, err := dataverse.NewCredential(identityFrom(t, lookup), "")
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			switch tt.want.(type) {
			case *azidentity.ClientSecretCredential:
				if _, ok := cred.(*azidentity.ClientSecretCredential); !ok {
					t.Errorf("credential = %T, want ClientSecretCredential", cred)
				}
			case *azidentity.DefaultAzureCredential:
				if _, ok := cred.(*azidentity.DefaultAzureCredential); !ok {
					t.Errorf("credential = %T, want DefaultAzureCredential", cred)
				}
			}
		})
	}
}

// identityFrom reads the identity settings from lookup as the handler does: through config.Load.
func identityFrom(t *testing.T, lookup config.Lookup) dataverse.Identity {
	t.Helper()
	c, err := config.Load(lookup)
	if err != nil {
		t.Fatal(err)
	}
	return dataverse.Identity{
		TenantID: c.AzureTenantID, ClientID: c.AzureClientID, ClientSecret: c.AzureClientSecret,
		IdentityEndpoint: c.IdentityEndpoint,
	}
}
