package deploycheck

import (
	"encoding/json"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

// Sessions are one setting, DVRELAY_USE_SESSIONS: the queue's requiresSession (fixed when the
// queue is created), SessionId on publish and the trigger's isSessionsEnabled must never
// disagree, or the trigger cannot listen. `handler package` writes isSessionsEnabled from the
// setting; the shipped files must agree with its default, so a deployment with the setting
// unset (and `func start` on the repository as it is) gets per-record order everywhere.
func TestSessions_agree_between_the_handler_default_infra_and_function_json(t *testing.T) {
	r := openRepo(t)
	b := r.bicep(t)
	queue := b.resource(t, "mainQueue")

	if got := property(t, b.file, queue, "requiresSession"); got != "useSessions != 'false'" {
		t.Errorf("%s: mainQueue requiresSession = %s, want useSessions != 'false' (sessions unless the setting says false, as the handler's default %v)",
			b.file, got, config.DefaultUseSessions)
	}
	if !config.DefaultUseSessions {
		t.Errorf("DVRELAY_USE_SESSIONS defaults to false: new deployments would not keep each record's order")
	}
	if def := defaults(t); def.UseSessions != config.DefaultUseSessions {
		t.Errorf("config.Load with nothing set gives UseSessions %v, DefaultUseSessions is %v", def.UseSessions, config.DefaultUseSessions)
	}

	for _, fn := range r.functions(t) {
		var doc struct {
			Bindings []map[string]any `json:"bindings"`
		}
		if err := json.Unmarshal(r.read(t, fn.file), &doc); err != nil {
			t.Fatalf("%s: %v", fn.file, err)
		}
		for _, binding := range doc.Bindings {
			if binding["type"] != "serviceBusTrigger" {
				continue
			}
			if got, _ := binding["isSessionsEnabled"].(bool); got != config.DefaultUseSessions {
				t.Errorf("%s: isSessionsEnabled %v, but DVRELAY_USE_SESSIONS defaults to %v and infra creates the queue that way",
					fn.file, binding["isSessionsEnabled"], config.DefaultUseSessions)
			}
		}
	}
}
