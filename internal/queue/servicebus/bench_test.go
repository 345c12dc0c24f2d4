package servicebus

import (
	"context"
	"strconv"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// discardSender accepts every message at once: what is left is this package's own cost.
type discardSender struct{}

func (discardSender) SendMessage(context.Context, *azservicebus.Message, *azservicebus.SendMessageOptions) error {
	return nil
}
func (discardSender) Close(context.Context) error { return nil }

func BenchmarkPublisher_Publish(b *testing.B) {
	p := newPublisher(discardSender{})
	m := event("0b6c7d2e-4f0a-4d7e-9a55-1f6f0f6f9a11")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReceiver_receive_and_complete_over_the_fake_broker(b *testing.B) {
	broker := newFakeBroker()
	broker.addQueue(mainQueue, defaultFakeQueue())
	pub := newPublisher(broker.sender(mainQueue))
	recv := newReceiver(broker.receiver(mainQueue), broker.sender(mainQueue))
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := pub.Publish(ctx, event("evt-"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		i++
		got, err := recv.Receive(ctx, 1)
		if err != nil || len(got) != 1 {
			b.Fatalf("Receive = %d, %v", len(got), err)
		}
		if err := recv.Complete(ctx, got[0]); err != nil {
			b.Fatal(err)
		}
	}
}
