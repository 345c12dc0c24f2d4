package dataverse

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// OperatorIdentity says which identities an operator's tool (handler register) may sign in
// with. The values are passed in, not read here, so the caller decides where they come from.
type OperatorIdentity struct {
	// TenantID, ClientID and ClientSecret name an app registration (AZURE_TENANT_ID,
	// AZURE_CLIENT_ID, AZURE_CLIENT_SECRET). All three or no secret at all.
	TenantID     string
	ClientID     string
	ClientSecret string
	// ManagedIdentity tries the managed identity of the machine the tool runs on (a pipeline
	// agent, a Function App's console): the user-assigned one named by ClientID when set. Only
	// ask for it where one exists: elsewhere the identity endpoint is probed until it times out.
	ManagedIdentity bool
	// DeviceCodePrompt, when set, adds the device code flow for a person at a terminal; it is
	// called with the code and the page to enter it on. Leave it nil where nobody can answer
	// (a pipeline), so a failed sign-in ends instead of waiting for a person.
	DeviceCodePrompt func(context.Context, azidentity.DeviceCodeMessage) error
	// HTTPClient sends the token requests; nil means outbound.NewClient. A client given here
	// must refuse redirects as outbound.NewClient's does (see identityOptions).
	HTTPClient *http.Client
}

// NewOperatorCredential builds the chain an operator's command signs in with, first match wins:
//
//  1. the app registration, when a client secret is given (a pipeline's service principal);
//     otherwise the managed identity, when asked for;
//  2. the Azure CLI's signed-in account (az login), for a person or a pipeline step that ran
//     az login;
//  3. the device code flow, when a prompt is given.
//
// A source that is not available (no az on the PATH, no managed identity) passes to the next;
// a source that is available but refused (a wrong secret) stops the chain with its error, so
// a typo is not hidden behind a device code prompt.
func NewOperatorCredential(id OperatorIdentity) (azcore.TokenCredential, error) {
	var sources []azcore.TokenCredential
	switch {
	case id.ClientSecret != "":
		if id.TenantID == "" || id.ClientID == "" {
			return nil, errors.New("AZURE_CLIENT_SECRET is set, so an app registration also needs AZURE_TENANT_ID and AZURE_CLIENT_ID")
		}
		cred, err := azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, id.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: identityOptions(id.HTTPClient)})
		if err != nil {
			return nil, fmt.Errorf("app registration %s in tenant %s: %w", id.ClientID, id.TenantID, err)
		}
		sources = append(sources, cred)
	case id.ManagedIdentity:
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: identityOptions(id.HTTPClient)}
		if id.ClientID != "" {
			opts.ID = azidentity.ClientID(id.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("managed identity: %w", err)
		}
		sources = append(sources, cred)
	}
	// The Azure CLI signs in itself (az account get-access-token); no request of ours to bound.
	cli, err := azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: id.TenantID})
	if err != nil {
		return nil, fmt.Errorf("azure cli credential: %w", err)
	}
	sources = append(sources, cli)
	if id.DeviceCodePrompt != nil {
		dc, err := azidentity.NewDeviceCodeCredential(&azidentity.DeviceCodeCredentialOptions{
			ClientOptions: identityOptions(id.HTTPClient),
			TenantID:      id.TenantID,
			UserPrompt:    id.DeviceCodePrompt,
		})
		if err != nil {
			return nil, fmt.Errorf("device code credential: %w", err)
		}
		sources = append(sources, dc)
	}
	chain, err := azidentity.NewChainedTokenCredential(sources, nil)
	if err != nil {
		return nil, fmt.Errorf("credential chain: %w", err)
	}
	return chain, nil
}
