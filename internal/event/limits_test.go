package event_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/event"
)

// The hostile bodies below once cost seconds of CPU each (a 1e999999 literal is an exact big.Rat
// inside the schema validator; a deep nest is walked level by level by every if/then). Each test
// bounds the work by allocations, never by the clock: a body refused before any tree is built
// allocates only its answer.

func TestParse_refuses_numbers_with_huge_exponents_in_ChangedFields_before_validating(t *testing.T) {
	p := newParser(t)
	body := pluginWith(append(repeat("1e999999", 40), repeat(validField, 2000)...)...)
	_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
	verr := validationError(t, err)
	if verr.Kind != event.KindPluginEvent || len(verr.Problems) != 40 {
		t.Fatalf("Kind %s, %d problems, want PluginEvent and 40: %v", verr.Kind, len(verr.Problems), err)
	}
	for i, want := range []string{"/ChangedFields/0", "/ChangedFields/1", "/ChangedFields/10"} {
		if got := verr.Problems[i]; got.Pointer != want || got.Detail != "is a number with an exponent beyond ±308" {
			t.Errorf("problem %d = %+v, want %s", i, got, want)
		}
	}
	if n := allocs(p, body); n > 500 {
		t.Errorf("%v allocations for a refused 40-number body; the body went past the pre-scan", n)
	}
}

func TestParse_refuses_numbers_with_huge_exponents_inside_a_native_attribute(t *testing.T) {
	p := newParser(t)
	body := updateWith(append([]string{`{"key":"new_amounts","value":[` + strings.Join(repeat("1e999999", 40), ",") + `]}`},
		repeat(validAttribute, 2000)...)...)
	_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
	verr := validationError(t, err)
	if verr.Kind != event.KindRemoteExecutionContext || len(verr.Problems) != 40 {
		t.Fatalf("Kind %s, %d problems, want RemoteExecutionContext and 40: %v", verr.Kind, len(verr.Problems), err)
	}
	if got := verr.Problems[0]; got.Pointer != "/InputParameters/0/value/Attributes/0/value/0" {
		t.Errorf("first problem = %+v", got)
	}
	if n := allocs(p, body); n > 500 {
		t.Errorf("%v allocations for a refused body; the body went past the pre-scan", n)
	}
}

func TestParse_refuses_an_attribute_nested_deeper_than_64_levels(t *testing.T) {
	p := newParser(t)
	plain := `{"key":"name","value":"x"}`
	body := updateWith(plain, plain, plain, `{"key":"new_deep","value":`+nested(9990, "1")+`}`)
	_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
	verr := validationError(t, err)
	want := []event.FieldProblem{{Pointer: "/InputParameters/0/value/Attributes/3/value", Detail: "is nested deeper than 64 levels"}}
	if !slices.Equal(verr.Problems, want) {
		t.Errorf("problems = %+v, want %+v", verr.Problems, want)
	}
	// Building the tree of this body would take some ten thousand allocations. The bound leaves
	// room for the pooled read buffers, which sync.Pool drops at random under the race detector.
	if n := allocs(p, body); n > 250 {
		t.Errorf("%v allocations for a refused %d-byte body; the body went past the pre-scan", n, len(body))
	}
}

func TestParse_accepts_64_levels_of_nesting_and_refuses_65(t *testing.T) {
	p := newParser(t)
	// The attribute value sits at level 7 (body, InputParameters, parameter, Target, Attributes,
	// attribute, value); 58 arrays reach level 64.
	deepest := updateWith(`{"key":"new_deep","value":` + nested(58, "1") + `}`)
	ev := parse(t, p, deepest, event.Hints{ReceivedAt: receivedAt})
	if got := attr(t, ev, "new_deep"); got != nested(58, "1") {
		t.Errorf("new_deep = %s", got)
	}
	_, err := p.Parse(updateWith(`{"key":"new_deep","value":`+nested(59, "1")+`}`), event.Hints{ReceivedAt: receivedAt})
	if got := pointers(t, err); !slices.Equal(got, []string{"/InputParameters/0/value/Attributes/0/value"}) {
		t.Errorf("pointers = %q (%v)", got, err)
	}
}

func TestParse_bounds_the_length_and_exponent_of_number_literals(t *testing.T) {
	p := newParser(t)
	sixtyFour := "1" + strings.Repeat("0", 63)
	tests := []struct {
		literal string
		detail  string // "" when accepted
	}{
		{"1e308", ""},
		{"-1E-308", ""},
		{"1.5e+308", ""},
		{"12500.0000", ""},
		{sixtyFour, ""},
		{"1e309", "is a number with an exponent beyond ±308"},
		{"1e-309", "is a number with an exponent beyond ±308"},
		{"1E+00000000000000000400", "is a number with an exponent beyond ±308"},
		{"0e999999", "is a number with an exponent beyond ±308"},
		{sixtyFour + "0", "is a number longer than 64 characters"},
		{"0." + strings.Repeat("1", 63), "is a number longer than 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.literal, func(t *testing.T) {
			ev, err := p.Parse(updateWith(`{"key":"new_amount","value":`+tt.literal+`}`), event.Hints{ReceivedAt: receivedAt})
			if tt.detail == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got := attr(t, ev, "new_amount"); got != tt.literal {
					t.Errorf("new_amount = %s, want the literal kept exactly", got)
				}
				return
			}
			verr := validationError(t, err)
			want := []event.FieldProblem{{Pointer: "/InputParameters/0/value/Attributes/0/value", Detail: tt.detail}}
			if !slices.Equal(verr.Problems, want) {
				t.Errorf("problems = %+v, want %+v", verr.Problems, want)
			}
		})
	}
}

func TestParse_bounds_the_elements_of_an_array_and_the_members_of_an_object(t *testing.T) {
	p := newParser(t)
	t.Run("10,000 elements are accepted", func(t *testing.T) {
		body := updateWith(`{"key":"new_list","value":[` + strings.Join(repeat("1", 10000), ",") + `]}`)
		parse(t, p, body, event.Hints{ReceivedAt: receivedAt})
	})
	t.Run("10,001 elements are refused", func(t *testing.T) {
		body := updateWith(`{"key":"new_list","value":[` + strings.Join(repeat("1", 10001), ",") + `]}`)
		_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
		want := []event.FieldProblem{{Pointer: "/InputParameters/0/value/Attributes/0/value", Detail: "has more than 10000 elements"}}
		if verr := validationError(t, err); !slices.Equal(verr.Problems, want) {
			t.Errorf("problems = %+v, want %+v", verr.Problems, want)
		}
	})
	t.Run("more than 100,000 values in a body are refused", func(t *testing.T) {
		list := `[` + strings.Join(repeat("0", 10000), ",") + `]`
		parse(t, p, updateWith(repeat(`{"key":"new_list","value":`+list+`}`, 9)...), event.Hints{ReceivedAt: receivedAt})
		_, err := p.Parse(updateWith(repeat(`{"key":"new_list","value":`+list+`}`, 11)...), event.Hints{ReceivedAt: receivedAt})
		want := []event.FieldProblem{{Pointer: "", Detail: "has more than 100000 values"}}
		if verr := validationError(t, err); !slices.Equal(verr.Problems, want) {
			t.Errorf("problems = %+v, want %+v", verr.Problems, want)
		}
	})
	t.Run("20,001 members are refused", func(t *testing.T) {
		members := make([]string, 20001)
		for i := range members {
			members[i] = fmt.Sprintf(`"m%d":null`, i)
		}
		body := mutateRaw(t, updateWith(), `"ParentContext":{`+strings.Join(members, ",")+`}`)
		_, err := p.Parse(body, event.Hints{ReceivedAt: receivedAt})
		want := []event.FieldProblem{{Pointer: "/ParentContext", Detail: "has more than 20000 members"}}
		if verr := validationError(t, err); !slices.Equal(verr.Problems, want) {
			t.Errorf("problems = %+v, want %+v", verr.Problems, want)
		}
	})
}

func TestParse_keeps_a_malformed_body_malformed_however_deep_or_odd_it_is(t *testing.T) {
	p := newParser(t)
	for name, body := range map[string]string{
		"truncated deep nest":            `{"a":` + strings.Repeat("[", 9990),
		"huge exponent, then garbage":    `{"ChangedFields":[1e999999],}`,
		"deep nest, then a second value": `{"a":` + nested(100, "1") + `} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := p.Parse([]byte(body), event.Hints{}); !errors.Is(err, event.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestDecodeCanonical_refuses_a_poison_message_nested_too_deep_before_validating(t *testing.T) {
	p := newParser(t)
	valid := mustMarshal(t, parse(t, p, sample(t, "plugin-event.json"), event.Hints{}))
	body := mutateRaw(t, valid, `"Attributes":{"name":`+nested(9990, "1")+`}`)
	_, err := p.DecodeCanonical(body)
	verr := validationError(t, err)
	want := []event.FieldProblem{{Pointer: "/Attributes/name", Detail: "is nested deeper than 64 levels"}}
	if verr.Kind != event.KindCanonicalEvent || !slices.Equal(verr.Problems, want) {
		t.Errorf("%s problems = %+v, want %+v", verr.Kind, verr.Problems, want)
	}
}
