package customhandler_test

import (
	"net/url"
	"testing"

	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
)

// The seed corpora in testdata/fuzz hold the host fixtures and the odd encodings the decoders
// tolerate; go test runs them as regression cases even without -fuzz.

func FuzzDecodeServiceBusTrigger(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := customhandler.DecodeServiceBusTrigger(body, "msg")
		if err != nil {
			return
		}
		if m.DeliveryCount < 0 {
			t.Errorf("DeliveryCount = %d", m.DeliveryCount)
		}
		if m.ApplicationProperties == nil {
			t.Error("ApplicationProperties is nil")
		}
		if !m.EnqueuedTime.IsZero() && m.EnqueuedTime.Location().String() != "UTC" {
			t.Errorf("EnqueuedTime %v is not UTC", m.EnqueuedTime)
		}
	})
}

func FuzzDecodeHTTPTrigger(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := customhandler.DecodeHTTPTrigger(body, "req")
		if err != nil {
			return
		}
		if r.Header == nil || r.Query == nil {
			t.Fatal("nil Header or Query")
		}
		_ = r.ContentLength()
		// Whatever the URL, the redacted form never carries a usable function key.
		red := r.RedactedURL()
		if u, err := url.Parse(red); err == nil {
			for k, vs := range u.Query() {
				if len(k) == 4 && (k[0]|0x20) == 'c' && (k[1]|0x20) == 'o' && (k[2]|0x20) == 'd' && (k[3]|0x20) == 'e' {
					for _, v := range vs {
						if v != "REDACTED" {
							t.Errorf("RedactedURL(%q) = %q keeps code=%q", r.URL, red, v)
						}
					}
				}
			}
		}
	})
}
