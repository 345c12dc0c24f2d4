package dataverse

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// LookupFunc reads a setting, as os.LookupEnv does. Passing it in keeps configuration reads
// explicit and lets tests supply their own environment.
type LookupFunc func(name string) (string, bool)

// NewCredential picks the credential for the environment the binary runs in:
//
//   - IDENTITY_ENDPOINT set (Azure Functions / App Service): ManagedIdentityCredential, for the
//     user-assigned identity clientID when it is not empty, the system-assigned one otherwise;
//   - AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET all set: ClientSecretCredential
//     (an app registration with an application user in the environment);
//   - otherwise DefaultAzureCredential (developer sign-ins: Azure CLI, azd, …).
//
// Every one of them caches its token in memory and refreshes it before it expires, so build one
// credential per process and share it.
func NewCredential(lookup LookupFunc, clientID string) (azcore.TokenCredential, error) {
	if v, ok := lookup("IDENTITY_ENDPOINT"); ok && v != "" {
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
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("default azure credential: %w", err)
	}
	return cred, nil
}
