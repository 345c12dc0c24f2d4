package tracecontext_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/tracecontext"
)

const (
	traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanHex  = "00f067aa0ba902b7"
	valid    = "00-" + traceHex + "-" + spanHex + "-01"
)

func TestParse_follows_the_W3C_traceparent_format(t *testing.T) {
	cases := []struct {
		name, in string
		want     string // the traceparent it is forwarded as; "" means invalid
	}{
		{"sampled", valid, valid},
		{"not sampled", "00-" + traceHex + "-" + spanHex + "-00", "00-" + traceHex + "-" + spanHex + "-00"},
		{"undefined flags are dropped", "00-" + traceHex + "-" + spanHex + "-ff", valid},
		{"a newer version is read as far as 00 goes", "01-" + traceHex + "-" + spanHex + "-01-what-comes-next", valid},
		{"a newer version of exactly 00's length", "cc-" + traceHex + "-" + spanHex + "-01", valid},
		{"version ff is forbidden", "ff-" + traceHex + "-" + spanHex + "-01", ""},
		{"version 00 with trailing data", valid + "-extra", ""},
		{"a newer version with trailing data not after a dash", "01-" + traceHex + "-" + spanHex + "-01extra", ""},
		{"upper-case hex", "00-" + strings.ToUpper(traceHex) + "-" + spanHex + "-01", ""},
		{"all-zero trace id", "00-" + strings.Repeat("0", 32) + "-" + spanHex + "-01", ""},
		{"all-zero span id", "00-" + traceHex + "-" + strings.Repeat("0", 16) + "-01", ""},
		{"short trace id", "00-" + traceHex[:31] + "-" + spanHex + "-01", ""},
		{"wrong separator", "00_" + traceHex + "-" + spanHex + "-01", ""},
		{"not hex", "00-" + traceHex[:31] + "g-" + spanHex + "-01", ""},
		{"flags not hex", "00-" + traceHex + "-" + spanHex + "-0x", ""},
		{"empty", "", ""},
		{"a Request-Id is not a traceparent", "|" + traceHex + "." + spanHex + ".", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, err := tracecontext.Parse(c.in)
			if c.want == "" {
				if !errors.Is(err, tracecontext.ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want ErrInvalid", c.in, sc, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.in, err)
			}
			if got := sc.String(); got != c.want {
				t.Errorf("Parse(%q).String() = %q, want %q", c.in, got, c.want)
			}
			if sc.TraceID.String() != traceHex || sc.SpanID.String() != spanHex {
				t.Errorf("ids %s %s", sc.TraceID, sc.SpanID)
			}
		})
	}
}

func TestParseRequestID_reads_only_the_W3C_compatible_hierarchical_id(t *testing.T) {
	sc, err := tracecontext.ParseRequestID("|" + traceHex + "." + spanHex + ".")
	if err != nil || sc.String() != valid {
		t.Fatalf("ParseRequestID = %v, %v; want %s", sc, err, valid)
	}
	for _, in := range []string{
		"|abc.1.",                                           // a legacy root that is no W3C trace id
		"|" + traceHex + "." + spanHex + ".1.",              // a child id: not the caller's own span
		traceHex + "." + spanHex + ".",                      // no leading |
		"|" + strings.Repeat("0", 32) + "." + spanHex + ".", // all-zero trace id
		valid,
	} {
		if _, err := tracecontext.ParseRequestID(in); !errors.Is(err, tracecontext.ErrInvalid) {
			t.Errorf("ParseRequestID(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestContinue_keeps_the_trace_and_makes_a_new_span(t *testing.T) {
	parent, _ := tracecontext.Parse(valid)
	child := tracecontext.Continue(parent)
	if child.TraceID != parent.TraceID || child.Flags != parent.Flags {
		t.Errorf("child %s of %s changed the trace or its flags", child, parent)
	}
	if child.SpanID == parent.SpanID || !child.IsValid() {
		t.Errorf("child %s has no span of its own", child)
	}
	if again, err := tracecontext.Parse(child.String()); err != nil || again != child {
		t.Errorf("child %s does not round-trip: %v %v", child, again, err)
	}
}

func TestContinue_starts_a_sampled_trace_when_there_is_no_parent(t *testing.T) {
	a, b := tracecontext.Continue(tracecontext.SpanContext{}), tracecontext.Continue(tracecontext.SpanContext{})
	if !a.IsValid() || a.Flags != tracecontext.FlagSampled {
		t.Errorf("new trace %s is not valid and sampled", a)
	}
	if a.TraceID == b.TraceID {
		t.Errorf("two new traces share the id %s", a.TraceID)
	}
}

func TestFromHeader_takes_traceparent_then_Request_Id_and_ignores_what_is_invalid(t *testing.T) {
	requestID := "|" + traceHex + "." + spanHex + "."
	other := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		name   string
		header http.Header
		want   string // "" means no span context
	}{
		{"traceparent", http.Header{"Traceparent": {valid}}, valid},
		{"traceparent wins over Request-Id", http.Header{"Traceparent": {other}, "Request-Id": {requestID}}, other},
		{"Request-Id alone", http.Header{"Request-Id": {requestID}}, valid},
		{"invalid traceparent", http.Header{"Traceparent": {"00-nope"}}, ""},
		{"invalid traceparent is not rescued by Request-Id", http.Header{"Traceparent": {"00-nope"}, "Request-Id": {requestID}}, ""},
		{"traceparent sent twice", http.Header{"Traceparent": {valid, other}}, ""},
		{"nothing", http.Header{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := tracecontext.FromHeader(c.header)
			got := ""
			if sc.IsValid() {
				got = sc.String()
			}
			if got != c.want {
				t.Errorf("FromHeader = %q, want %q", got, c.want)
			}
		})
	}
}

func TestProperties_round_trip_under_both_Service_Bus_names(t *testing.T) {
	sc, _ := tracecontext.Parse(valid)
	props := map[string]any{"Attempt": int64(1)}
	tracecontext.SetProperties(props, sc)
	if props["Diagnostic-Id"] != valid || props["traceparent"] != valid || props["Attempt"] != int64(1) {
		t.Fatalf("properties = %v", props)
	}
	if got := tracecontext.FromProperties(props); got != sc {
		t.Errorf("FromProperties = %s, want %s", got, sc)
	}
	for name, props := range map[string]map[string]any{
		"Diagnostic-Id alone, traceparent form":               {"Diagnostic-Id": valid},
		"Diagnostic-Id alone, hierarchical form":              {"Diagnostic-Id": "|" + traceHex + "." + spanHex + "."},
		"an invalid traceparent beside a valid Diagnostic-Id": {"traceparent": "junk", "Diagnostic-Id": valid},
	} {
		if got := tracecontext.FromProperties(props); got != sc {
			t.Errorf("%s: FromProperties = %s, want %s", name, got, sc)
		}
	}
	if got := tracecontext.FromProperties(map[string]any{"traceparent": 42}); got.IsValid() {
		t.Errorf("a number was read as a trace: %s", got)
	}
}

func TestContext_carries_only_a_valid_span_context(t *testing.T) {
	sc, _ := tracecontext.Parse(valid)
	if got, ok := tracecontext.FromContext(tracecontext.NewContext(context.Background(), sc)); !ok || got != sc {
		t.Errorf("FromContext = %s, %v", got, ok)
	}
	if _, ok := tracecontext.FromContext(context.Background()); ok {
		t.Error("an empty context carries a trace")
	}
	if _, ok := tracecontext.FromContext(tracecontext.NewContext(context.Background(), tracecontext.SpanContext{})); ok {
		t.Error("the zero span context was reported as a trace")
	}
}
