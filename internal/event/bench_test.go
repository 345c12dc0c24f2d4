package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// cpuPerOp measures the process's CPU time over a benchmark and reports it per operation. On a
// machine shared with other work, wall time per operation says as much about the neighbours as
// about the code; CPU time, which is what a server pays per event, much less.
func cpuPerOp(b *testing.B) func() {
	start := processCPU()
	return func() {
		if used := processCPU() - start; used > 0 && b.N > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func BenchmarkParse_native(b *testing.B) {
	p := newParser(b)
	body := sample(b, "opportunity-update.json")
	h := event.Hints{ReceivedAt: time.Now()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := p.Parse(body, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParse_native_20KB parses a 19.6 KB Create of an account captured from Dataverse.
func BenchmarkParse_native_20KB(b *testing.B) {
	p := newParser(b)
	body := fixture(b, "albanianxrm-create-account-sync.json")
	h := event.Hints{ReceivedAt: time.Now()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	defer cpuPerOp(b)()
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
	defer cpuPerOp(b)()
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
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := p.DecodeCanonical(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParse_hostile parses bodies built to be expensive, each of which must be refused with
// a 400. Before the pre-scan they cost seconds each (the names say what they held).
func BenchmarkParse_hostile(b *testing.B) {
	exponents := repeat("1e999999", 2000)
	for _, bb := range []struct {
		name string
		body []byte
	}{
		// An 18 KB plugin event whose ChangedFields are all 1e999999.
		{"huge_exponents_plugin_18KB", pluginWith(exponents...)},
		// 40 such numbers inside one native attribute.
		{"huge_exponents_in_attribute", updateWith(`{"key":"new_amounts","value":[` + strings.Join(exponents[:40], ",") + `]}`)},
		// One attribute nested 9,990 arrays deep (26 KB).
		{"deep_nesting_26KB", updateWith(`{"key":"new_deep","value":` + nested(9990, "1") + `}`)},
		// 10,000 Target attributes without key or value (30 KB).
		{"bad_items_30KB", updateWith(repeat("{}", 10000)...)},
		// 1 MB of empty objects, 10,000 to a column: past the limit on values.
		{"values_past_limit_1MB", updateWith(repeat(emptyObjects(), 34)...)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			p := newParser(b)
			b.SetBytes(int64(len(bb.body)))
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				var verr *event.ValidationError
				if _, err := p.Parse(bb.body, event.Hints{ReceivedAt: receivedAt}); !errors.As(err, &verr) {
					b.Fatalf("got %v, want a ValidationError", err)
				}
			}
		})
	}
}

// emptyObjects is a column holding 10,000 empty objects (30 KB, 10,001 values).
func emptyObjects() string {
	return `{"key":"new_objects","value":[` + strings.Join(repeat("{}", 10000), ",") + `]}`
}

// BenchmarkParse_widest_accepted_270KB parses the costliest shape the limits let through to an
// event: nine columns of 10,000 empty objects each (90,000 values).
func BenchmarkParse_widest_accepted_270KB(b *testing.B) {
	p := newParser(b)
	body := updateWith(repeat(emptyObjects(), 9)...)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMarked is the worker's decode of a body the intake wrote and marked: one decode
// without the schema and the checks (compare BenchmarkDecodeCanonical).
func BenchmarkDecodeMarked(b *testing.B) {
	p := newParser(b)
	ev, err := p.Parse(sample(b, "opportunity-update.json"), event.Hints{ReceivedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	body, err := event.AppendCanonical(nil, &ev)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := p.DecodeMarked(body); err != nil {
			b.Fatal(err)
		}
	}
}
