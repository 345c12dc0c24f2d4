package queue

import (
	"strconv"
	"strings"
)

// Message id suffixes. A retry and a resubmission must not reuse an id the queue saw within the
// duplicate detection window, or the broker accepts the send and silently drops it.
const (
	retryInfix    = "/retry/"
	resubmitInfix = "/resubmit/"
)

// RetryID names the retry that carries attempt after the message id: <chain>/retry/<attempt>,
// where chain is id without a trailing /retry/<n>. A delivery chain is named after its first
// message: the EventId for the intake's message, <EventId>/resubmit/<n> for a resubmitted one,
// so a resubmitted event's retries do not collide with the ids its first chain used, and a
// retry scheduled twice for the same delivery (a redelivered original) gets the same id and is
// dropped as a duplicate.
func RetryID(id string, attempt int) string {
	chain := id
	if i := strings.LastIndex(id, retryInfix); i >= 0 {
		if _, err := strconv.Atoi(id[i+len(retryInfix):]); err == nil {
			chain = id[:i]
		}
	}
	return chain + retryInfix + strconv.Itoa(attempt)
}

// ResubmitID names the n-th resubmission of the dead-lettered message id: <base>/resubmit/<n>,
// where base is BaseID(id), so resubmitting the same event again and again keeps the id short
// (Service Bus allows 128 characters). n must differ between resubmissions of one event: the
// embedded queue counts them, Service Bus (which cannot count) uses the time in nanoseconds.
func ResubmitID(id string, n int64) string {
	return BaseID(id) + resubmitInfix + strconv.FormatInt(n, 10)
}

// BaseID is the id a chain of retries and resubmissions started from: id without any retry or
// resubmit suffix. For the intake's messages it is the EventId.
func BaseID(id string) string {
	base := id
	for _, s := range [...]string{retryInfix, resubmitInfix} {
		if i := strings.Index(base, s); i >= 0 {
			base = base[:i]
		}
	}
	return base
}

// Attempt reads the Attempt property: 1 for the intake's message, n+1 for the n-th scheduled
// retry, and 1 when it is missing or not a positive whole number.
func Attempt(props map[string]any) int {
	if n, ok := IntProperty(props, PropAttempt); ok && n > 0 {
		return n
	}
	return 1
}

// RetryAttempt is the Attempt of a retry scheduled with update merged into props: update's, when
// it sets one, else one more than props'.
func RetryAttempt(props, update map[string]any) int {
	if _, ok := update[PropAttempt]; ok {
		return Attempt(update)
	}
	return Attempt(props) + 1
}

// IntProperty reads an integer application property as the transports deliver it: an integer
// of any AMQP width from Service Bus and the embedded queue, a float64 or a numeric string from
// the Functions host's JSON. ok is false when it is missing or not a number.
func IntProperty(props map[string]any, name string) (n int, ok bool) {
	switch v := props[name].(type) {
	case int:
		return v, true
	case int32:
		return int(v), true
	case int64:
		return int(v), true
	case uint32:
		return int(v), true
	case float64:
		return int(v), true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return n, err == nil
	}
	return 0, false
}
