// Package servicebus is the Azure Service Bus backend of the queue contracts: a Publisher for
// the intake, a DeadLetterQueue the worker parks failed events on (and support lists and
// resubmits from), and a peek-lock Receiver for `handler serve` when Service Bus is configured.
//
// Every SDK type is reached through the two small interfaces in sdk.go, so the tests can run
// the same code against an in-memory broker.
package servicebus

import (
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

// ConnectionSettings are the values of the ServiceBusConnection settings. internal/config reads
// and checks them, once, at start; this package never does.
type ConnectionSettings struct {
	// ConnectionString is ServiceBusConnection when it is a plain string (SAS key or emulator).
	// It wins over FullyQualifiedNamespace, as it does for the Functions host.
	ConnectionString string
	// FullyQualifiedNamespace is ServiceBusConnection__fullyQualifiedNamespace,
	// e.g. contoso.servicebus.windows.net. Used with Microsoft Entra ID credentials.
	FullyQualifiedNamespace string
	// ClientID is ServiceBusConnection__clientId: the client ID of a user-assigned managed
	// identity. Empty means DefaultAzureCredential (developer sign-in, workload or system identity).
	ClientID string
}

// ErrNotConfigured reports settings that name no Service Bus at all.
var ErrNotConfigured = errors.New("servicebus: neither " + config.ServiceBusConnectionSetting + " nor " + config.ServiceBusNamespaceSetting + " is set")

// Client retry policy. The SDK default (3 retries, 4 s initial delay, 120 s cap) sleeps 3-5 s
// before its first retry and up to about a minute in all, which is longer than the intake's
// publish deadline: a blip would turn into a context timeout before the retry even ran. Short
// delays let a reconnect happen inside that budget, and the caller's ctx deadline still bounds
// every send and settlement (the SDK checks it before each sleep).
const (
	clientMaxRetries    = 3
	clientRetryDelay    = 200 * time.Millisecond
	clientMaxRetryDelay = 2 * time.Second
)

func clientOptions() *azservicebus.ClientOptions {
	return &azservicebus.ClientOptions{
		RetryOptions: azservicebus.RetryOptions{
			MaxRetries:    clientMaxRetries,
			RetryDelay:    clientRetryDelay,
			MaxRetryDelay: clientMaxRetryDelay,
		},
	}
}

// NewClient builds one Service Bus client for the process. Make it once and share it: every
// Sender and Receiver made from it shares its AMQP connection. Nothing is dialled until the
// first send or receive, so a namespace that is a host name but the wrong one, or a wrong
// credential, shows up there, not here.
func NewClient(s ConnectionSettings) (*azservicebus.Client, error) {
	if s.ConnectionString != "" {
		// The SDK's parse errors name the missing key, never its value, so they are safe to wrap.
		c, err := azservicebus.NewClientFromConnectionString(s.ConnectionString, clientOptions())
		if err != nil {
			return nil, fmt.Errorf("%s: not a usable Service Bus connection string: %w", config.ServiceBusConnectionSetting, err)
		}
		return c, nil
	}
	if s.FullyQualifiedNamespace == "" {
		return nil, ErrNotConfigured
	}
	cred, err := credential(s.ClientID)
	if err != nil {
		return nil, err
	}
	c, err := azservicebus.NewClient(s.FullyQualifiedNamespace, cred, clientOptions())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.ServiceBusNamespaceSetting, err)
	}
	return c, nil
}

func credential(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		c, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ClientOptions: credentialOptions(),
			ID:            azidentity.ClientID(clientID),
		})
		if err != nil {
			return nil, fmt.Errorf("%s: managed identity credential: %w", config.ServiceBusClientIDSetting, err)
		}
		return c, nil
	}
	c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: credentialOptions()})
	if err != nil {
		return nil, fmt.Errorf("%s: default Azure credential: %w", config.ServiceBusNamespaceSetting, err)
	}
	return c, nil
}

// credentialOptions send the credential's token requests through a client that refuses
// redirects: followed, one would carry X-IDENTITY-HEADER or a client secret to a host nobody
// configured, and its token would then be used against Service Bus.
func credentialOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Transport: outbound.NewClient(outbound.Options{})}
}
