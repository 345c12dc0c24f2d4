package servicebus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// DeadLetterQueue is the one place support looks for failed events: a plain queue (by default
// dataverse-events-deadletter) that receives
//   - the worker's parked copies: under the Functions trigger the host owns the message lock,
//     so TriggerSettler cannot dead-letter the message itself; it sends a copy here with the
//     reason as application properties and lets the host complete the original;
//   - the main queue's own dead letters, which the broker forwards here because infra sets
//     forwardDeadLetteredMessagesTo on the main queue: crash loops past MaxDeliveryCount, and
//     under `handler serve` the worker's dead letters, which Receiver.Settle makes natively with
//     the same application properties.
//
// It also lists the parked events and resubmits one to the main queue.
type DeadLetterQueue struct {
	parker    messageSender   // sends to the dead-letter queue
	reader    messageReceiver // peek-locks the dead-letter queue
	resubmits messageSender   // sends to the main queue
	now       func() time.Time

	// maxScan bounds how many messages Resubmit locks while looking for its target: every
	// one it passes over is abandoned, which raises its delivery count.
	maxScan int
	// idleWait is how long a Resubmit receive waits before it decides the queue has no more.
	idleWait time.Duration

	resubmitting sync.Mutex // one Resubmit or purge at a time: the SDK receiver refuses concurrent receives
	lastResubmit int64      // the n of the last ResubmitID made, under resubmitting
}

var (
	_ queue.DeadLetterer    = (*DeadLetterQueue)(nil)
	_ queue.DeadLetterAdmin = (*DeadLetterQueue)(nil)
)

const (
	defaultResubmitScan     = 500
	defaultResubmitIdleWait = 3 * time.Second
	// peekPageSize is the most Service Bus returns from one peek.
	peekPageSize = 250
)

// NewDeadLetterQueue makes the dead-letter queue named deadLetterQueue, resubmitting to
// mainQueue. The SDK attaches links lazily, so a worker that only parks never opens the
// receiver.
func NewDeadLetterQueue(client *azservicebus.Client, mainQueue, deadLetterQueue string) (*DeadLetterQueue, error) {
	parker, err := client.NewSender(deadLetterQueue, nil)
	if err != nil {
		return nil, fmt.Errorf("sender for queue %s: %w", deadLetterQueue, err)
	}
	reader, err := client.NewReceiverForQueue(deadLetterQueue, nil)
	if err != nil {
		return nil, fmt.Errorf("receiver for queue %s: %w", deadLetterQueue, err)
	}
	resubmits, err := client.NewSender(mainQueue, nil)
	if err != nil {
		return nil, fmt.Errorf("sender for queue %s: %w", mainQueue, err)
	}
	return newDeadLetterQueue(parker, reader, resubmits), nil
}

func newDeadLetterQueue(parker messageSender, reader messageReceiver, resubmits messageSender) *DeadLetterQueue {
	return &DeadLetterQueue{
		parker:    parker,
		reader:    reader,
		resubmits: resubmits,
		now:       time.Now,
		maxScan:   defaultResubmitScan,
		idleWait:  defaultResubmitIdleWait,
	}
}

// DeadLetter sends a copy of m to the dead-letter queue with DeadLetterReason and
// DeadLetterErrorDescription set, keeping whatever else the caller put in the properties
// (FailedStep, OriginalMessageId, OriginalDeliveryCount). The copy keeps m's MessageID, so if
// the worker parks the same delivery twice (it crashed before answering the host), duplicate
// detection on the dead-letter queue keeps one. A schedule on m is dropped: parking is now.
func (d *DeadLetterQueue) DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error {
	c := *m
	c.ScheduledEnqueueTime = time.Time{}
	c.ApplicationProperties = maps.Clone(m.ApplicationProperties)
	if c.ApplicationProperties == nil {
		c.ApplicationProperties = map[string]any{}
	}
	c.ApplicationProperties[queue.PropDeadLetterReason] = reason
	c.ApplicationProperties[queue.PropDeadLetterErrorDescription] = description
	if err := send(ctx, d.parker, &c); err != nil {
		return fmt.Errorf("dead-letter %s (%s): %w", m.MessageID, reason, err)
	}
	return nil
}

// ListDeadLetters returns up to limit parked messages, oldest first, without locking them.
func (d *DeadLetterQueue) ListDeadLetters(ctx context.Context, limit int) ([]queue.DeadLettered, error) {
	return d.QueryDeadLetters(ctx, queue.DeadLetterFilter{Limit: max(limit, 1)})
}

// QueryDeadLetters returns the parked messages f selects, oldest first, without locking them.
// Service Bus cannot filter a peek, so it peeks page by page from the lowest sequence number f
// allows and keeps what f.Match accepts, until it has f.Max() or the queue ends.
func (d *DeadLetterQueue) QueryDeadLetters(ctx context.Context, f queue.DeadLetterFilter) ([]queue.DeadLettered, error) {
	var out []queue.DeadLettered
	from := max(f.AfterSeq+1, f.Seq, 0)
	for len(out) < f.Max() {
		// An explicit FromSequenceNumber every time: the SDK receiver otherwise resumes where
		// its previous peek stopped, and a second listing would come back empty.
		page, err := d.reader.PeekMessages(ctx, d.peekCount(f, len(out)), &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
		if err != nil {
			return out, fmt.Errorf("peek dead letters from %d: %w", from, err)
		}
		if len(page) == 0 {
			break
		}
		for _, rm := range page {
			from = max(from, deref(rm.SequenceNumber)+1)
			if dl := fromDeadLettered(rm); f.Match(dl) && len(out) < f.Max() {
				out = append(out, dl)
			}
		}
		if f.Seq > 0 && from > f.Seq {
			break // past the one it asked for
		}
	}
	return out, nil
}

// peekCount is how many messages the next peek of a query asks for: no more than it still needs
// when every message counts, a page when the filter may pass some over, one for a sequence number.
func (d *DeadLetterQueue) peekCount(f queue.DeadLetterFilter, have int) int {
	switch {
	case f.Seq > 0:
		return 1
	case f.EventID == "" && f.Reason == "" && f.Entity == "" && f.Since.IsZero() && f.Before.IsZero():
		return min(f.Max()-have, peekPageSize)
	}
	return peekPageSize
}

// History lists what the dead-letter queue shows of the event eventID: its parked messages,
// completed by queue.History with the ids they imply. The main queue cannot be searched for one
// event, and the broker's duplicate detection history cannot be read.
func (d *DeadLetterQueue) History(ctx context.Context, eventID string) ([]queue.Sighting, error) {
	var seen []queue.Sighting
	f := queue.DeadLetterFilter{EventID: eventID, Limit: peekPageSize}
	for {
		page, err := d.QueryDeadLetters(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", eventID, err)
		}
		for _, dl := range page {
			seen = append(seen, queue.Sighting{MessageID: dl.MessageID, State: queue.SeenDeadLettered,
				Seq: dl.SequenceNumber, At: dl.DeadLetteredAt})
		}
		if len(page) < f.Limit {
			return queue.History(seen), nil
		}
		f.AfterSeq = page[len(page)-1].SequenceNumber
	}
}

// Resubmit sends the parked message with sequence number seq back to the main queue and then
// removes it from the dead-letter queue. The copy has
//   - a new MessageID, queue.ResubmitID with the time in ns: the original ID is most likely still
//     inside the main queue's duplicate detection window, and the broker would accept and drop it;
//   - the dead-letter properties and the Attempt count removed, so it starts a fresh chain;
//   - no schedule and no time-to-live of its own (the queue default applies).
//
// Service Bus cannot lock a message by sequence number, so Resubmit receives from the head of
// the queue until it meets seq (at most maxScan messages) and abandons the others. If the send
// fails nothing changes. If the send succeeds but the removal fails, the new ID is returned with
// the error: the event is on its way, and the entry left behind is a stale copy.
func (d *DeadLetterQueue) Resubmit(ctx context.Context, seq int64) (string, error) {
	d.resubmitting.Lock()
	defer d.resubmitting.Unlock()
	target, passed, err := d.lockBySequence(ctx, seq)
	defer func() { d.abandonAll(ctx, passed) }()
	if err != nil {
		return "", err
	}

	c := target.Message()
	// The time names the resubmission; it must still differ between two made within one tick.
	d.lastResubmit = max(d.now().UnixNano(), d.lastResubmit+1)
	c.MessageID = ptr(queue.ResubmitID(target.MessageID, d.lastResubmit))
	c.ApplicationProperties = withoutDeadLetterProps(target.ApplicationProperties)
	c.ScheduledEnqueueTime = nil
	c.TimeToLive = nil
	if err := d.resubmits.SendMessage(ctx, c, nil); err != nil {
		passed = append(passed, target)
		return "", fmt.Errorf("resubmit %s (sequence %d): %w", target.MessageID, seq, err)
	}
	if err := d.reader.CompleteMessage(ctx, target, nil); err != nil {
		return *c.MessageID, fmt.Errorf("resubmitted %s as %s, but could not remove it from the dead-letter queue: %w",
			target.MessageID, *c.MessageID, settleError(err))
	}
	return *c.MessageID, nil
}

// PurgeDeadLetter removes the parked message with sequence number seq for good. It finds it
// the way Resubmit does, and fails with queue.ErrNotFound when it is not there.
func (d *DeadLetterQueue) PurgeDeadLetter(ctx context.Context, seq int64) error {
	d.resubmitting.Lock()
	defer d.resubmitting.Unlock()
	target, passed, err := d.lockBySequence(ctx, seq)
	defer func() { d.abandonAll(ctx, passed) }()
	if err != nil {
		return err
	}
	if err := d.reader.CompleteMessage(ctx, target, nil); err != nil {
		return fmt.Errorf("purge dead letter %d (%s): %w", seq, target.MessageID, settleError(err))
	}
	return nil
}

// lockBySequence receives until it holds the message numbered seq. Messages it passes over stay
// locked (so the next receive moves on) and are returned in passed, also on error, for the
// caller to abandon.
func (d *DeadLetterQueue) lockBySequence(ctx context.Context, seq int64) (*azservicebus.ReceivedMessage, []*azservicebus.ReceivedMessage, error) {
	var target *azservicebus.ReceivedMessage
	var passed []*azservicebus.ReceivedMessage
	for scanned := 0; scanned < d.maxScan; {
		round, cancel := context.WithTimeout(ctx, d.idleWait)
		msgs, err := d.reader.ReceiveMessages(round, min(d.maxScan-scanned, peekPageSize), nil)
		cancel()
		for _, m := range msgs {
			scanned++
			if target == nil && deref(m.SequenceNumber) == seq {
				target = m
				continue
			}
			passed = append(passed, m)
		}
		switch {
		case target != nil:
			return target, passed, nil
		case ctx.Err() != nil:
			return nil, passed, fmt.Errorf("find dead letter %d: %w", seq, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			return nil, passed, fmt.Errorf("sequence %d after %d messages: %w", seq, scanned, queue.ErrNotFound)
		case err != nil:
			return nil, passed, fmt.Errorf("find dead letter %d: %w", seq, err)
		}
	}
	return nil, passed, fmt.Errorf("sequence %d not within the first %d messages: %w", seq, d.maxScan, queue.ErrNotFound)
}

// abandonAll releases locks Resubmit took but did not use. It runs even when ctx is done, with
// a short deadline of its own: otherwise the messages stay hidden until their locks expire.
func (d *DeadLetterQueue) abandonAll(ctx context.Context, msgs []*azservicebus.ReceivedMessage) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, m := range msgs {
		// A failed abandon is harmless: the lock expires on its own within the lock duration.
		_ = d.reader.AbandonMessage(ctx, m, nil)
	}
}

// Close detaches the links.
func (d *DeadLetterQueue) Close(ctx context.Context) error {
	return errors.Join(d.parker.Close(ctx), d.reader.Close(ctx), d.resubmits.Close(ctx))
}
