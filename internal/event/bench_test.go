package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

func BenchmarkParse_native(b *testing.B) {
	p := newParser(b)
	body := sample(b, "opportunity-update.json")
	h := event.Hints{ReceivedAt: time.Now()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(body, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkParse_plugin(b *testing.B) {
	p := newParser(b)
	body := sample(b, "plugin-event.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(body, event.Hints{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDecodeCanonical(b *testing.B) {
	p := newParser(b)
	ev, err := p.Parse(sample(b, "opportunity-update.json"), event.Hints{ReceivedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.DecodeCanonical(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
