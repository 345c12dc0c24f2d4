package dataverse

import (
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// Identity is who the worker signs in to Dataverse as: the AZURE_* settings and whether the
// platform offers a managed identity endpoint, all read once at start by the caller.
type Identity struct {
	TenantID     string // AZURE_TENANT_ID
	ClientID     string // AZURE_CLIENT_ID
	ClientSecret string // AZURE_CLIENT_SECRET
	// IdentityEndpoint is IDENTITY_ENDPOINT, set on every Function App and App Service; the
	// managed identity credential finds it (and IDENTITY_HEADER) by itself.
	IdentityEndpoint string
	// HTTPClient sends the token requests; nil means outbound.NewClient. A client given here
	// must refuse redirects as outbound.NewClient's does (see identityOptions).
	HTTPClient *http.Client
}

// identityOptions are the client options of every credential dvrelay builds: token requests go
// through a client that refuses redirects, as every other request dvrelay sends does. Followed,
// a redirect from the identity endpoint would carry X-IDENTITY-HEADER (or a client secret, or a
// federated token) to a host nobody configured, and whatever token that host returned would then
// be sent to Dataverse as the bearer token.
func identityOptions(client *http.Client) azcore.ClientOptions {
	if client == nil {
		client = outbound.NewClient(outbound.Options{})
	}
	return azcore.ClientOptions{Transport: client}
}

// NewCredential picks the credential for the environment the binary runs in, in this order:
//
//   - TenantID, ClientID and ClientSecret all set: ClientSecretCredential (an app registration
//     with an application user in the environment). It comes first because it is only ever
//     configured on purpose, while IDENTITY_ENDPOINT is set on every Function App;
//   - IdentityEndpoint set (Azure Functions / App Service): ManagedIdentityCredential for the
//     user-assigned identity clientID, or ClientID when clientID is empty (the convention
//     azidentity follows), and the system-assigned identity when both are empty. An app with
//     only a user-assigned identity has no system-assigned one to fall back on;
//   - otherwise DefaultAzureCredential (developer sign-ins: Azure CLI, azd, …).
//
// Every one of them caches its token in memory and refreshes it before it expires, so build one
// credential per process and share it.
func NewCredential(id Identity, clientID string) (azcore.TokenCredential, error) {
	if id.TenantID != "" && id.ClientID != "" && id.ClientSecret != "" {
		cred, err := azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, id.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: identityOptions(id.HTTPClient)})
		if err != nil {
			return nil, fmt.Errorf("client secret credential for AZURE_CLIENT_ID %s: %w", id.ClientID, err)
		}
		return cred, nil
	}
	if id.IdentityEndpoint != "" {
		if clientID == "" {
			clientID = id.ClientID
		}
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: identityOptions(id.HTTPClient)}
		if clientID != "" {
			opts.ID = azidentity.ClientID(clientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("managed identity credential: %w", err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: identityOptions(id.HTTPClient)})
	if err != nil {
		return nil, fmt.Errorf("default azure credential: %w", err)
	}
	return cred, nil
}
