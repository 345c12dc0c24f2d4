package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// encodingJSON is the canonical body as encoding/json writes it, the bytes AppendCanonical is
// held to.
func encodingJSON(t testing.TB, ev Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// fastSeeds are the fixtures, the samples and the FuzzParse corpus.
func fastSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	for _, pattern := range []string{"testdata/dataverse/*.json", "../../samples/*.json", "../../samples/*/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			seeds[f] = b
		}
	}
	corpus, _ := filepath.Glob("testdata/fuzz/FuzzParse/*")
	for _, f := range corpus {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if quoted, ok := strings.CutPrefix(line, "[]byte("); ok {
				body, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				seeds[f] = []byte(body)
			}
		}
	}
	if len(seeds) < 20 {
		t.Fatalf("found %d seeds; run from the package directory", len(seeds))
	}
	return seeds
}

// agree fails unless Parse (the fast path, then the full parser) and the full parser alone give
// the same verdict and, for an accepted body, the same canonical bytes. It reports whether the
// fast path took the body.
func agree(t *testing.T, p *Parser, body []byte, h Hints) bool {
	t.Helper()
	full, fullErr := p.parseFull(body, h)
	var buf []byte
	fast, fastTook := p.fastParse(body, h, &buf)
	if !fastTook {
		return false
	}
	if fullErr != nil {
		t.Fatalf("the fast path accepted a body the full parser refuses (%v):\n%s", fullErr, body)
	}
	want := encodingJSON(t, full)
	got, err := AppendCanonical(nil, &fast)
	if err != nil {
		t.Fatalf("AppendCanonical: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical bytes differ:\nfast: %s\nfull: %s\nbody: %s", got, want, body)
	}
	if fast.StepID != full.StepID || fast.StepName != full.StepName {
		t.Fatalf("step differs: fast %q %q, full %q %q", fast.StepID, fast.StepName, full.StepID, full.StepName)
	}
	return true
}

// FuzzFastPath: whatever the body, the fast path accepts only what the full parser accepts, and
// writes the same canonical bytes for it; so Parse answers as the full parser alone would.
func FuzzFastPath(f *testing.F) {
	for _, b := range fastSeeds(f) {
		f.Add(b, false)
	}
	p, err := NewParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, sizeExceeded bool) {
		agree(t, p, body, Hints{SizeExceeded: sizeExceeded, ReceivedAt: time.Unix(1764054245, 0)})
	})
}

// The fast path is worth having only if it takes what Dataverse posts for a Create or an Update.
func TestFastPath_takes_the_creates_and_updates_Dataverse_posts(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	seeds := fastSeeds(t)
	for _, name := range []string{
		"../../samples/opportunity-update.json",
		"testdata/dataverse/albanianxrm-create-account-sync.json",
		"testdata/dataverse/albanianxrm-create-albxrm_alltypes-async.json", // multi-select choices
		"testdata/dataverse/albanianxrm-create-sharepointdocumentlocation-async.json",
		"testdata/dataverse/albanianxrm-create-shko_allfields-sync.json",
		"testdata/dataverse/docs-d365-update-msdyn_agentstatus-async.json",
		"testdata/dataverse/docs-powerapps-update-contact-async.json",
	} {
		if !agree(t, p, seeds[name], Hints{ReceivedAt: time.Unix(1764054245, 0)}) {
			t.Errorf("the fast path declined %s", name)
		}
	}
	taken := 0
	for _, body := range seeds {
		if agree(t, p, body, Hints{ReceivedAt: time.Unix(1764054245, 0)}) {
			taken++
		}
	}
	t.Logf("the fast path took %d of %d seeds", taken, len(seeds))
}

// FuzzAppendCanonical: AppendCanonical writes what encoding/json writes, for the events the
// parsers give and for any text in their strings.
func FuzzAppendCanonical(f *testing.F) {
	f.Add("plain", "<b>&amp;</b>", "\u2028\x00\x1f\"\\", "\xff\xfe")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		mode, yes := 1, true
		ev := Event{SchemaVersion: a, EventID: b, CorrelationID: c, EventName: d, Entity: a, Message: b,
			RecordID: c, ChangedFields: []string{a, b, c, d}, TriggeredBy: d, Timestamp: a, OrganizationID: b,
			Source: c, Relationship: d, RelatedRecords: []RecordRef{{ID: a, LogicalName: b}}, Mode: &mode,
			IsInTransaction: &yes, Depth: len(a), Stage: len(b)}
		raw := map[string]json.RawMessage{}
		for _, s := range []string{a, b, c, d} {
			if v, err := json.Marshal(s); err == nil {
				raw[s] = v
			}
		}
		ev.Attributes, ev.Parameters, ev.OutputParameters = raw, raw, raw
		got, err := AppendCanonical(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := encodingJSON(t, ev); !bytes.Equal(got, want) {
			t.Fatalf("\ngot  %s\nwant %s", got, want)
		}
	})
}

// largeUpdate is the sample Update with its Target grown to about size bytes of columns: text
// with markup, and money, as a 256 KB Dataverse body holds.
func largeUpdate(t testing.TB, size int) []byte {
	t.Helper()
	body, err := os.ReadFile("../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	var cols strings.Builder
	for i := 0; cols.Len() < size-len(body); i++ {
		if i%5 == 4 {
			fmt.Fprintf(&cols, `{"key":"new_amount%04d","value":{"__type":"Money:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":%d.50}},`, i, 1000+i)
		} else {
			fmt.Fprintf(&cols, `{"key":"new_text%04d","value":"Line %d of the notes: 40 laptops, docks & <b>support</b> \u00e9"},`, i, i)
		}
	}
	marker := []byte(`"Attributes": [{`)
	at := bytes.Index(body, marker) + len(marker) - 1
	return slices.Concat(body[:at], []byte(cols.String()), body[at:])
}

func TestFastPath_takes_a_256KB_update_and_agrees_with_the_full_parser(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	body := largeUpdate(t, 256<<10)
	if !agree(t, p, body, Hints{ReceivedAt: time.Unix(1764054245, 0)}) {
		t.Fatal("the fast path declined a 256 KB Update")
	}
}

func BenchmarkParse_native_256KB(b *testing.B) {
	p, err := NewParser()
	if err != nil {
		b.Fatal(err)
	}
	body := largeUpdate(b, 256<<10)
	h := Hints{ReceivedAt: time.Now()}
	var buf []byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseBuffered(body, h, &buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse_native_256KB_full_parser(b *testing.B) {
	p, err := NewParser()
	if err != nil {
		b.Fatal(err)
	}
	body := largeUpdate(b, 256<<10)
	h := Hints{ReceivedAt: time.Now()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.parseFull(body, h); err != nil {
			b.Fatal(err)
		}
	}
}

// Cases the fast path must leave to the full parser, written out so they stay covered whatever
// the fuzzer's cache holds.
func TestFastPath_agrees_on_bodies_built_to_tell_the_paths_apart(t *testing.T) {
	p, err := NewParser()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("../../samples/opportunity-update.json")
	if err != nil {
		t.Fatal(err)
	}
	money := `"__type": "Money:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",`
	target := `"Id": "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",
            "KeyAttributes": [],
            "LogicalName": "opportunity"`
	for _, c := range []struct{ name, old, new string }{
		{"a second __type", money, `"__type": "Money:x", "__type": "OptionSetValue:y",`},
		{"a second __type in a reference", `"Name": null,`, `"Name": null, "__type": "Money:x",`},
		{"a repeated member", `"MessageName": "Update",`, `"MessageName": "Update", "MessageName": "Create",`},
		{"an EntityMoniker naming the record", `"IsExecutingOffline"`, `"EntityMonikerX": 1, "IsExecutingOffline"`},
		{"a Target without its id", target, `"KeyAttributes": [], "LogicalName": "opportunity"`},
		{"an exponent", `"Value": 12500.0000`, `"Value": 1.25e4`},
		{"a date out of range", `\/Date(1764054245000)\/`, `\/Date(999999999999999999)\/`},
		{"an escaped key", `"MessageName"`, `"Message\u004eame"`},
		{"invalid UTF-8", `Contoso - 40`, "Contoso \xff 40"},
		{"a lone surrogate", `Contoso - 40`, `Contoso \ud800 40`},
		{"a control character", `Contoso - 40`, "Contoso \x01 40"},
		{"a typed wrapper", `"Depth": 1,`, `"Depth": {"__type":"Int32:#System","__value":1},`},
		{"a plain object as a column", money, `"NotType": "Money:x",`},
		{"an unknown typed value", money, `"__type": "Decimal:x",`},
		{"the plugin event's names", `"Depth": 1,`, `"Depth": 1, "EventName": "X", "RecordId": "c3e9a2b8-7f4d-ef11-bfe3-6045bd03d9d8",`},
		{"trailing data", "}\n", "} {}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := bytes.Replace(base, []byte(c.old), []byte(c.new), 1)
			if bytes.Equal(body, base) {
				t.Fatalf("%q is not in the sample", c.old)
			}
			agree(t, p, body, Hints{ReceivedAt: time.Unix(1764054245, 0)})
		})
	}
}
