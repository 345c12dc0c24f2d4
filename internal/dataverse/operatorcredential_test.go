package dataverse_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/dvrelay/dvrelay/internal/dataverse"
)

func TestNewOperatorCredential_refuses_a_client_secret_without_tenant_and_client_id(t *testing.T) {
	_, err := dataverse.NewOperatorCredential(dataverse.OperatorIdentity{ClientSecret: "s3cret", ClientID: "app"})
	if err == nil || !strings.Contains(err.Error(), "AZURE_TENANT_ID") {
		t.Fatalf("err = %v, want one naming AZURE_TENANT_ID", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error quotes the secret: %v", err)
	}
}

// Not parallel: the managed identity endpoint is found through process environment variables.
func TestNewOperatorCredential_signs_in_with_the_managed_identity_before_the_Azure_CLI(t *testing.T) {
	var asked atomic.Int32
	var clientID atomic.Value
	mi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		clientID.Store(r.URL.Query().Get("client_id"))
		_ = json.NewEncoder(w).Encode(map[string]string{
			"access_token": "operator-mi-token",
			"expires_on":   strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
			"resource":     r.URL.Query().Get("resource"),
			"token_type":   "Bearer",
		})
	}))
	defer mi.Close()
	t.Setenv("IDENTITY_ENDPOINT", mi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "h")
	t.Setenv("PATH", "") // no az: had the chain reached it, it would fail

	cred, err := dataverse.NewOperatorCredential(dataverse.OperatorIdentity{ManagedIdentity: true, ClientID: "pipeline-identity"})
	if err != nil {
		t.Fatalf("NewOperatorCredential: %v", err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://contoso.crm.dynamics.com/.default"}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if tok.Token != "operator-mi-token" || asked.Load() != 1 || clientID.Load() != "pipeline-identity" {
		t.Errorf("token %q after %d identity requests for client_id %v; want the managed identity's, once, for pipeline-identity", tok.Token, asked.Load(), clientID.Load())
	}
}

// Not parallel: PATH is process state.
func TestNewOperatorCredential_without_a_prompt_fails_instead_of_waiting_for_a_person(t *testing.T) {
	t.Setenv("PATH", "") // no az
	cred, err := dataverse.NewOperatorCredential(dataverse.OperatorIdentity{})
	if err != nil {
		t.Fatalf("NewOperatorCredential: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://contoso.crm.dynamics.com/.default"}})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("GetToken = %v (context: %v), want a failure once the Azure CLI is found missing", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "AzureCLICredential") {
		t.Errorf("err = %v, want it to say the Azure CLI was tried", err)
	}
}
