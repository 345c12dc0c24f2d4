package servicebus

import (
	"context"
	"errors"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/queue"
)

// testKey stands in for a SharedAccessKey; a test asserts it never appears in an error.
const testKey = "c2VjcmV0LWtleS1tdXN0LW5vdC1sZWFr"

func TestNewClient_names_the_setting_that_is_wrong(t *testing.T) {
	tests := []struct {
		name        string
		settings    ConnectionSettings
		wantIs      error
		wantSetting string
	}{
		{name: "nothing set", settings: ConnectionSettings{}, wantIs: ErrNotConfigured, wantSetting: config.ServiceBusNamespaceSetting},
		{
			name:        "connection string without a key",
			settings:    ConnectionSettings{ConnectionString: "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k"},
			wantSetting: config.ServiceBusConnectionSetting,
		},
		{
			name:        "connection string with a malformed pair",
			settings:    ConnectionSettings{ConnectionString: "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKey" + testKey},
			wantSetting: config.ServiceBusConnectionSetting,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.settings)
			if err == nil {
				_ = c.Close(context.Background())
				t.Fatal("NewClient succeeded, want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error = %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantSetting) {
				t.Errorf("error %q does not name %s", err, tt.wantSetting)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q leaks the shared access key", err)
			}
		})
	}
}

func TestNewClient_accepts_each_way_the_host_can_be_configured(t *testing.T) {
	tests := []struct {
		name     string
		settings ConnectionSettings
	}{
		{"connection string", ConnectionSettings{ConnectionString: "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=" + testKey}},
		{"connection string wins over a namespace", ConnectionSettings{
			ConnectionString:        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=" + testKey,
			FullyQualifiedNamespace: "not a namespace",
		}},
		{"namespace with a user-assigned identity", ConnectionSettings{FullyQualifiedNamespace: "contoso.servicebus.windows.net", ClientID: "00000000-0000-0000-0000-000000000001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.settings)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			_ = c.Close(context.Background())
		})
	}
}

// closedLoopbackPort returns a port on 127.0.0.1 that nothing listens on.
func closedLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// unreachablePublisher is a Publisher on the real SDK whose broker refuses every connection.
func unreachablePublisher(t *testing.T) *Publisher {
	t.Helper()
	port := closedLoopbackPort(t)
	client, err := NewClient(ConnectionSettings{
		ConnectionString: "Endpoint=sb://127.0.0.1:" + strconv.Itoa(port) + "/;SharedAccessKeyName=k;SharedAccessKey=" + testKey + ";UseDevelopmentEmulator=true",
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Close(ctx)
	})
	pub, err := NewPublisher(client, config.DefaultQueueName)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	return pub
}

// This one runs the real SDK: a broker that refuses connections must make Publish fail, not
// hang and not report success, once the caller's deadline passes.
func TestPublisher_on_the_real_SDK_fails_when_the_broker_is_unreachable(t *testing.T) {
	pub := unreachablePublisher(t)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pub.Publish(ctx, &queue.Message{MessageID: "evt-unreachable", Body: []byte(`{}`)})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Publish to an unreachable broker succeeded")
		}
		t.Logf("Publish error: %v", err)
		if !strings.Contains(err.Error(), "evt-unreachable") {
			t.Errorf("error %q does not name the MessageID", err)
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error %q leaks the shared access key", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Publish did not return long after its 2 s deadline")
	}
}

// The client's retry policy is short on purpose (see clientOptions): with the SDK defaults an
// unreachable broker keeps a send retrying for about 45 s, so this ctx would run out first.
func TestPublisher_on_the_real_SDK_reports_connection_lost_after_its_own_short_retries(t *testing.T) {
	pub := unreachablePublisher(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := pub.Publish(ctx, &queue.Message{MessageID: "evt-unreachable", Body: []byte(`{}`)})
	var sbErr *azservicebus.Error
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeConnectionLost {
		t.Fatalf("Publish error = %v, want *azservicebus.Error with code %s before the ctx deadline", err, azservicebus.CodeConnectionLost)
	}
}
