package servicebus

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// Publisher sends events to the main queue. It holds one Sender for its lifetime: a Sender
// owns an AMQP link, and making one per message costs a round trip and, under load, starves
// the connection (see the SDK's guidance to reuse clients and senders).
type Publisher struct {
	sender messageSender
}

var _ queue.Publisher = (*Publisher)(nil)

// NewPublisher makes a Publisher for queueName on client.
func NewPublisher(client *azservicebus.Client, queueName string) (*Publisher, error) {
	s, err := client.NewSender(queueName, nil)
	if err != nil {
		return nil, fmt.Errorf("sender for queue %s: %w", queueName, err)
	}
	return newPublisher(s), nil
}

func newPublisher(s messageSender) *Publisher { return &Publisher{sender: s} }

// Publish returns nil only once the broker has accepted the message. A MessageID the queue saw
// within its duplicate detection window is accepted too, and dropped by the broker. ctx bounds
// the whole send, reconnects and retries included: give it a deadline.
func (p *Publisher) Publish(ctx context.Context, m *queue.Message) error {
	if err := send(ctx, p.sender, m); err != nil {
		return fmt.Errorf("publish %s: %w", m.MessageID, err)
	}
	return nil
}

// Close detaches the sender's link. The client, shared, is closed by whoever made it.
func (p *Publisher) Close(ctx context.Context) error {
	if err := p.sender.Close(ctx); err != nil {
		return fmt.Errorf("close publisher: %w", err)
	}
	return nil
}

func send(ctx context.Context, s messageSender, m *queue.Message) error {
	out, err := toSDKMessage(m)
	if err != nil {
		return err
	}
	return s.SendMessage(ctx, out, nil)
}
