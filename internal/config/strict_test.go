package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

func load(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func TestStrictRoutes_is_off_unless_set_and_names_the_setting_when_bad(t *testing.T) {
	if strict, err := load(t, nil).StrictRoutes(); strict || err != nil {
		t.Errorf("unset: %v, %v; want off", strict, err)
	}
	if strict, err := load(t, map[string]string{"DVRELAY_STRICT_ROUTES": "true"}).StrictRoutes(); !strict || err != nil {
		t.Errorf("true: %v, %v; want on", strict, err)
	}
	_, err := load(t, map[string]string{"DVRELAY_STRICT_ROUTES": "yes please"}).StrictRoutes()
	if err == nil || !strings.Contains(err.Error(), `DVRELAY_STRICT_ROUTES: "yes please" is not true or false`) {
		t.Errorf("bad value: err = %v", err)
	}
	if !slices.Contains(config.SettingNames(), "DVRELAY_STRICT_ROUTES") {
		t.Error("SettingNames does not list DVRELAY_STRICT_ROUTES")
	}
}
