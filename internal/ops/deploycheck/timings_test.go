package deploycheck

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/functions/worker"
)

// The Service Bus queue and the host must hold a message for as long as the worker may spend
// on one delivery, and the queue must promise what the embedded queue promises.

func TestThe_main_queue_and_host_json_fit_one_worker_delivery(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	h := r.host(t)
	def := defaults(t)
	queue := b.resource(t, "mainQueue")

	lock := isoDuration(t, b.file, property(t, b.file, queue, "lockDuration"))
	if lock <= worker.DefaultProcessTimeout || lock > 5*time.Minute {
		t.Errorf("%s: mainQueue lockDuration %v, want more than one delivery (%v) and at most Service Bus's 5m",
			b.file, lock, worker.DefaultProcessTimeout)
	}
	if renew := hostDuration(t, h.Extensions.ServiceBus.MaxAutoLockRenewalDuration); renew < worker.DefaultProcessTimeout {
		t.Errorf("host.json: maxAutoLockRenewalDuration %v is shorter than one delivery (%v)", renew, worker.DefaultProcessTimeout)
	}
	if timeout := hostDuration(t, h.FunctionTimeout); timeout <= worker.DefaultProcessTimeout {
		t.Errorf("host.json: functionTimeout %v does not outlast one delivery (%v)", timeout, worker.DefaultProcessTimeout)
	}
	if ac := h.Extensions.ServiceBus.AutoCompleteMessages; ac == nil || !*ac {
		t.Error("host.json: autoCompleteMessages must be true: a custom handler cannot complete messages itself")
	}

	if got := property(t, b.file, queue, "requiresDuplicateDetection"); got != "true" {
		t.Errorf("%s: mainQueue requiresDuplicateDetection = %s, want true (MessageId = EventId drops re-posts)", b.file, got)
	}
	window := isoDuration(t, b.file, property(t, b.file, queue, "duplicateDetectionHistoryTimeWindow"))
	if window != def.DuplicateWindow {
		t.Errorf("%s: mainQueue duplicate window %v, the embedded queue's is %v; both backends should drop the same re-posts", b.file, window, def.DuplicateWindow)
	}
	plain, sessions := deliveryCounts(t, b.file, property(t, b.file, queue, "maxDeliveryCount"))
	if plain != def.MaxDeliveryCount {
		t.Errorf("%s: mainQueue maxDeliveryCount without sessions %d, the embedded queue's is %d", b.file, plain, def.MaxDeliveryCount)
	}
	// With sessions every attempt of a retry in place is a delivery: Service Bus must not
	// dead-letter the message (with its generic reason) before the worker has spent them.
	if attempts := worker.InPlacePolicy(worker.DefaultRetryPolicy()).MaxAttempts; sessions <= attempts {
		t.Errorf("%s: mainQueue maxDeliveryCount with sessions %d, want more than the %d attempts of a retry in place",
			b.file, sessions, attempts)
	}
	// One invocation works for up to DefaultProcessTimeout and then waits up to InPlaceHold.
	invocation := worker.DefaultProcessTimeout + worker.InPlaceHold
	if timeout := hostDuration(t, h.FunctionTimeout); timeout <= invocation {
		t.Errorf("host.json: functionTimeout %v does not outlast a retry in place (%v)", timeout, invocation)
	}
	if renew := hostDuration(t, h.Extensions.ServiceBus.MaxAutoLockRenewalDuration); renew <= invocation {
		t.Errorf("host.json: maxAutoLockRenewalDuration %v does not outlast a retry in place (%v)", renew, invocation)
	}
}

// deliveryCounts reads mainQueue's maxDeliveryCount, "useSessions == 'false' ? N : M": N without
// sessions, M with them.
func deliveryCounts(t *testing.T, file, expr string) (plain, sessions int) {
	t.Helper()
	m := regexp.MustCompile(`^useSessions == 'false' \? (\d+) : (\d+)$`).FindStringSubmatch(expr)
	if m == nil {
		t.Fatalf("%s: mainQueue maxDeliveryCount %q, want useSessions == 'false' ? <without> : <with sessions>", file, expr)
	}
	plain, _ = strconv.Atoi(m[1])
	sessions, _ = strconv.Atoi(m[2])
	return plain, sessions
}

func TestHost_json_client_retry_options_match_the_host_json_schema(t *testing.T) {
	opts := openRepo(t).host(t).Extensions.ServiceBus.ClientRetryOptions
	// json.schemastore.org/host.json: mode is an enum of lower-case names, delay has exactly two
	// fractional digits.
	if opts.Mode != "exponential" && opts.Mode != "fixed" {
		t.Errorf("host.json: clientRetryOptions.mode %q, the schema allows exponential or fixed", opts.Mode)
	}
	if !regexp.MustCompile(`^\d\d:[0-5]\d:[0-5]\d\.\d\d$`).MatchString(opts.Delay) {
		t.Errorf("host.json: clientRetryOptions.delay %q, the schema wants hh:mm:ss.ff", opts.Delay)
	}
}

// isoDuration reads the ISO 8601 durations Service Bus properties use (PT3M, PT10M, PT1H30M).
func isoDuration(t *testing.T, file, s string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$`).FindStringSubmatch(s)
	if m == nil || s == "PT" {
		t.Fatalf("%s: %q is not an ISO 8601 time duration", file, s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	return d
}

// hostDuration reads host.json's hh:mm:ss durations.
func hostDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^(\d\d):(\d\d):(\d\d)$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("host.json: %q is not hh:mm:ss", s)
	}
	h, _ := strconv.Atoi(m[1])
	min, _ := strconv.Atoi(m[2])
	sec, _ := strconv.Atoi(m[3])
	return time.Duration(h)*time.Hour + time.Duration(min)*time.Minute + time.Duration(sec)*time.Second
}
