package worker

import "time"

// Retry in place, for a session-enabled queue under the Functions host.
//
// There the host holds the record's session and hands its messages over one at a time; the
// handler cannot settle, defer or touch session state. Scheduling a copy of a failed message
// (the retry of a queue without sessions) would put it at the tail of its session, behind the
// record's later events. So the message keeps its place instead: the invocation waits the
// back-off itself, then answers non-2xx; the host abandons the message, and Service Bus serves an
// abandoned message of a session again first, at once, with its delivery count raised. The
// delivery count is the attempt. Once the attempts are spent the worker dead-letters the message
// itself (a copy on the dead-letter queue with its reason) and answers 200, which releases the
// record.
//
// Each wait is bounded by InPlaceHold, so one invocation (DefaultProcessTimeout of work plus the
// wait) stays inside host.json's functionTimeout and maxAutoLockRenewalDuration. The attempts
// are as many as it takes for the waits to span OutageBudget, and the queue's maxDeliveryCount
// must be higher still, or Service Bus dead-letters the message with its generic reason first.
// The cost: a record waiting for its next attempt holds one of the host's maxConcurrentSessions.
const (
	// InPlaceHold is the longest one invocation waits for its message's next attempt.
	InPlaceHold = 5 * time.Minute
	// OutageBudget is how long a downstream may be down before its events are dead-lettered:
	// the six hours DefaultRetryPolicy gives without sessions.
	OutageBudget = 6 * time.Hour
)

// InPlacePolicy is p for retries in place: no wait longer than InPlaceHold, and MaxAttempts
// enough for the waits to add up to OutageBudget (jitter only lengthens them).
func InPlacePolicy(p RetryPolicy) RetryPolicy {
	p = withDefaults(p)
	p.LaterMax = min(p.LaterMax, InPlaceHold)
	var spent time.Duration
	n := 1
	for spent < OutageBudget {
		spent += p.LaterDelay(n, 0, 0)
		n++
	}
	p.MaxAttempts = n
	return p
}
