package dataverse

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// LookupFunc reads a setting, as os.LookupEnv does. Passing it in keeps configuration reads
// explicit and lets tests supply their own environment.
type LookupFunc func(name string) (string, bool)

// NewCredential picks the credential for the environment the binary runs in, in this order:
//
//   - AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET all set: ClientSecretCredential
//     (an app registration with an application user in the environment). It comes first because
//     it is only ever configured on purpose, while IDENTITY_ENDPOINT is set on every Function App;
//   - IDENTITY_ENDPOINT set (Azure Functions / App Service): ManagedIdentityCredential for the
//     user-assigned identity clientID, or AZURE_CLIENT_ID when clientID is empty (the
//     convention azidentity follows), and the system-assigned identity when both are empty. An
//     app with only a user-assigned identity has no system-assigned one to fall back on;
//   - otherwise DefaultAzureCredential (developer sign-ins: Azure CLI, azd, …).
//
// Every one of them caches its token in memory and refreshes it before it expires, so build one
// credential per process and share it.
func NewCredential(lookup LookupFunc, clientID string) (azcore.TokenCredential, error) {
	tenant, _ := lookup("AZURE_TENANT_ID")
	appID, _ := lookup("AZURE_CLIENT_ID")
	secret, _ := lookup("AZURE_CLIENT_SECRET")
	if tenant != "" && appID != "" && secret != "" {
		cred, err := azidentity.NewClientSecretCredential(tenant, appID, secret, nil)
		if err != nil {
			return nil, fmt.Errorf("client secret credential for AZURE_CLIENT_ID %s: %w", appID, err)
		}
		return cred, nil
	}
	if v, ok := lookup("IDENTITY_ENDPOINT"); ok && v != "" {
		if clientID == "" {
			clientID = appID
		}
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if clientID != "" {
			opts.ID = azidentity.ClientID(clientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("managed identity credential: %w", err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("default azure credential: %w", err)
	}
	return cred, nil
}
