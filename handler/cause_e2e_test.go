package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Support reads why the ERP refused an event in the dead letter; the log, at debug level,
// names the status only.
func TestServe_dead_letter_keeps_the_ERPs_reason_and_the_log_does_not(t *testing.T) {
	t.Parallel()
	const reason = "customer account 4711 is blocked in ERP"
	credit, erp := newDownstream(t, `{"score":5}`), newDownstream(t, "")
	erp.answer(func(string) int { return http.StatusBadRequest }, `{"message":"`+reason+`"}`)
	p := startServe(t, t.TempDir(), freeAddr(t), flowEnv(credit, erp))

	a := mustAccept(t, p.addr, sampleEvent(t))
	eventually(t, "a dead letter", func() bool { return health(t, p.addr)["deadLettered"] == float64(1) })

	resp, err := http.Get("http://" + p.addr + "/api/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		DeadLetters []struct {
			MessageID   string `json:"messageId"`
			Description string `json:"description"`
		} `json:"deadLetters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.DeadLetters) != 1 || !strings.HasPrefix(list.DeadLetters[0].MessageID, a.EventID) {
		t.Fatalf("dead letters = %+v, want event %s", list.DeadLetters, a.EventID)
	}
	want := `POST ${DVRELAY_ERP_URL}: 400 Bad Request: {"message":"` + reason + `"}`
	if d := list.DeadLetters[0].Description; !strings.Contains(d, want) {
		t.Errorf("description %q does not hold %q", d, want)
	}
	logs := p.out.String()
	if strings.Contains(logs, reason) {
		t.Errorf("the log quotes the ERP's answer:\n%s", logs)
	}
	if !strings.Contains(logs, "400 Bad Request") {
		t.Errorf("the log does not name the status:\n%s", logs)
	}
}
