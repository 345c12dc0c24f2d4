package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// decodeAsEncodingJSON is what buildTree must equal: encoding/json's Decoder with UseNumber.
func decodeAsEncodingJSON(t testing.TB, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return top
}

// treeCases are bodies whose strings, numbers and shapes take every path of buildTree.
var treeCases = []string{
	`{}`, " \t\r\n{ } \n", `{"a":1}`, `{"a":-0.5e+3,"b":0,"c":-0,"d":1E-7,"e":12345678901234567890}`,
	`{"a":[1,2,{"b":null}],"c":true,"d":false,"e":[],"f":{},"g":[[]],"h":[{}]}`,
	`{"a":"\u00e9\n\"\\\/\b\f\r\t"}`, `{"a":"line\nnext\ttab\"q\\b\/s\b\f\r"}`, `{"a":"\/Date(1700000000000)\/"}`, `{"a":"x\\u0041"}`,
	"{\"a\":\"\xff\xfe\"}", "{\"\xff\":\"k\"}", "{\"a\":\"caf\xc3\xa9\"}", "{\"a\":\"\\/\xff\"}",
	`{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`, `{"a":"\ude00\ud83d"}`, `{"a":"\ud83dx"}`, `{"a":"\ud83d\u0041"}`,
	`{"a":1,"a":2}`, `{"a":{"b":1},"a":[true]}`, `{"\u0041":"key escaped","A":"later wins"}`,
	`{ "a" : [ 1 , "x" , { "b" : [ ] } ] , "c" : null }`, `{"":""}`, `{"a":"\u0000"}`,
	`{"a":"` + strings.Repeat(`\\`, 10) + `"}`,
}

func TestBuildTree_decodes_as_encoding_json_does(t *testing.T) {
	bodies := map[string][]byte{}
	for i, c := range treeCases {
		bodies["case "+string(rune('a'+i))] = []byte(c)
	}
	for _, dir := range []string{"testdata/dataverse", "../../samples", "../../samples/servicebus"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bodies[f] = raw
		}
	}
	if len(bodies) < len(treeCases)+10 {
		t.Fatalf("only %d bodies found: the fixtures moved", len(bodies))
	}
	for name, body := range bodies {
		scan := prescan(body)
		if !scan.wellFormed || !scan.object || !scan.problems.empty() {
			if strings.HasPrefix(name, "case") {
				t.Errorf("%s: the pre-scan refused %q", name, body)
			}
			continue
		}
		if got, want := buildTree(body), decodeAsEncodingJSON(t, body); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: buildTree gives\n%#v\nencoding/json gives\n%#v", name, got, want)
		}
	}
}

// FuzzBuildTree: on every body the pre-scan accepts, buildTree gives what encoding/json gives.
func FuzzBuildTree(f *testing.F) {
	for _, c := range treeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		scan := prescan(body)
		if !scan.wellFormed || !scan.object || !scan.problems.empty() {
			return
		}
		if got, want := buildTree(body), decodeAsEncodingJSON(t, body); !reflect.DeepEqual(got, want) {
			t.Fatalf("buildTree gives\n%#v\nencoding/json gives\n%#v", got, want)
		}
	})
}
