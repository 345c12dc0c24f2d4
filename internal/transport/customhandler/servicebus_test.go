package customhandler_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dvrelay/dvrelay/internal/transport/customhandler"
)

const fixtureBody = `{"eventId":"evt_01HZX9","source":"github","type":"push","receivedAt":"2026-11-25T04:40:11Z"}`

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withEnvelope decodes a fixture envelope, lets edit change it, and encodes it again.
func withEnvelope(t *testing.T, fixture string, edit func(data, meta map[string]any)) []byte {
	t.Helper()
	var env struct {
		Data     map[string]any `json:"Data"`
		Metadata map[string]any `json:"Metadata"`
	}
	if err := json.Unmarshal(readFixture(t, fixture), &env); err != nil {
		t.Fatal(err)
	}
	edit(env.Data, env.Metadata)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeServiceBusTrigger_reads_the_host_fixtures(t *testing.T) {
	for _, fixture := range []string{"servicebus-invocation.json", "servicebus-invocation-binary.json"} {
		t.Run(fixture, func(t *testing.T) {
			m, err := customhandler.DecodeServiceBusTrigger(readFixture(t, fixture), "msg")
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Body) != fixtureBody {
				t.Errorf("Body = %s", m.Body)
			}
			want := customhandler.SBMessage{
				Body:                  m.Body,
				MessageID:             "evt_01HZX9",
				CorrelationID:         "req-7d1e",
				Subject:               "github.push",
				DeliveryCount:         1,
				SequenceNumber:        42,
				ApplicationProperties: map[string]any{"source": "github", "attempt": int64(1)},
				EnqueuedTime:          time.Date(2026, 11, 25, 4, 40, 12, 0, time.UTC),
			}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
	}
}

func TestDecodeServiceBusTrigger_accepts_every_body_encoding(t *testing.T) {
	onceEncoded, _ := json.Marshal(fixtureBody)
	cases := []struct {
		name string
		msg  any // Data.msg, as it is put into the envelope
		want string
	}{
		{"twice encoded (default dataType)", string(onceEncoded), fixtureBody},
		{"once encoded", fixtureBody, fixtureBody},
		{"base64 (dataType binary)", "eyJhIjoxfQ==", `{"a":1}`},
		{"object", map[string]any{"a": 1}, `{"a":1}`},
		{"array", []any{1, 2}, `[1,2]`},
		{"plain text that is not base64", "hello!", "hello!"},
		// The default dataType encodes text twice; text that happens to spell base64 ("test",
		// "ping") must not be decoded as such, or the dead-letter copy of a stray text
		// message holds garbage instead of what was sent.
		{"text under the default dataType that looks like base64", `"test"`, "test"},
		{"JSON string under the default dataType", `"\"ping\""`, `"ping"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := withEnvelope(t, "servicebus-invocation.json", func(data, _ map[string]any) { data["msg"] = tc.msg })
			m, err := customhandler.DecodeServiceBusTrigger(env, "msg")
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Body) != tc.want {
				t.Errorf("Body = %s, want %s", m.Body, tc.want)
			}
		})
	}
}

func TestDecodeServiceBusTrigger_reads_DeliveryCount_in_every_encoding(t *testing.T) {
	cases := []struct {
		name  string
		value any
		want  int
	}{
		{"string", "3", 3},
		{"number", 3, 3},
		{"JSON-encoded string", `"3"`, 3},
		{"garbage", "three", 0},
		{"negative", "-1", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := withEnvelope(t, "servicebus-invocation.json", func(_, meta map[string]any) {
				meta["DeliveryCount"] = tc.value
				meta["SequenceNumber"] = tc.value
			})
			m, err := customhandler.DecodeServiceBusTrigger(env, "msg")
			if err != nil {
				t.Fatal(err)
			}
			if m.DeliveryCount != tc.want {
				t.Errorf("DeliveryCount = %d, want %d", m.DeliveryCount, tc.want)
			}
		})
	}
}

func TestDecodeServiceBusTrigger_falls_back_to_the_legacy_metadata_names(t *testing.T) {
	env := withEnvelope(t, "servicebus-invocation.json", func(_, meta map[string]any) {
		delete(meta, "Subject")
		delete(meta, "ApplicationProperties")
		delete(meta, "EnqueuedTime")
		meta["Label"] = "legacy.label"
		meta["UserProperties"] = map[string]any{"Attempt": 2, "ratio": 0.5, "ok": true}
		meta["EnqueuedTimeUtc"] = "2026-11-25T05:00:01"
		meta["SessionId"] = `"rec-1"`
		meta["MessageId"] = "plain-id" // not JSON-encoded: tolerated
	})
	m, err := customhandler.DecodeServiceBusTrigger(env, "msg")
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "legacy.label" || m.SessionID != "rec-1" || m.MessageID != "plain-id" {
		t.Errorf("Subject %q, SessionID %q, MessageID %q", m.Subject, m.SessionID, m.MessageID)
	}
	wantProps := map[string]any{"Attempt": int64(2), "ratio": 0.5, "ok": true}
	if !reflect.DeepEqual(m.ApplicationProperties, wantProps) {
		t.Errorf("ApplicationProperties = %#v", m.ApplicationProperties)
	}
	if want := time.Date(2026, 11, 25, 5, 0, 1, 0, time.UTC); !m.EnqueuedTime.Equal(want) {
		t.Errorf("EnqueuedTime = %v", m.EnqueuedTime)
	}
}

func TestDecodeServiceBusTrigger_leaves_missing_metadata_zero(t *testing.T) {
	m, err := customhandler.DecodeServiceBusTrigger([]byte(`{"Data":{"msg":"\"{}\""}}`), "msg")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "{}" || m.MessageID != "" || m.DeliveryCount != 0 || !m.EnqueuedTime.IsZero() || m.ApplicationProperties == nil {
		t.Errorf("got %+v", m)
	}
}

func TestDecodeServiceBusTrigger_rejects_unreadable_invocations(t *testing.T) {
	cases := map[string]string{
		"not JSON":        `{"Data":`,
		"no such binding": `{"Data":{"other":"\"{}\""}}`,
		"null body":       `{"Data":{"msg":null}}`,
		"number body":     `{"Data":{"msg":42}}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := customhandler.DecodeServiceBusTrigger([]byte(body), "msg")
			if !errors.Is(err, customhandler.ErrInvocation) {
				t.Errorf("err = %v, want ErrInvocation", err)
			}
		})
	}
}
