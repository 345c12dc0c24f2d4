package config

import (
	"os"
	"strings"
)

// StrictRoutesEnv turns a routes step that would be skipped at start (a ${SETTING} it needs is
// unset, DATAVERSE_URL is missing) into a start-up error. Production sets it: a step that is
// quietly off completes every event without doing its work.
const StrictRoutesEnv = "DVRELAY_STRICT_ROUTES"

// StrictRoutes reads DVRELAY_STRICT_ROUTES (default false). It is read apart from Load, by the
// worker's start-up, and named in SettingNames like every other setting.
func (c Config) StrictRoutes() (bool, error) {
	r := reader{lookup: c.routeVariables}
	if r.lookup == nil {
		r.lookup = func(string) (string, bool) { return "", false }
	}
	strict := r.boolean(StrictRoutesEnv, false)
	if len(r.errs) > 0 {
		return false, r.errs[0]
	}
	return strict, nil
}

// EnvironmentNames lists the names of the process's environment variables, so that a
// reference to an unset one can name the set one it was probably meant to be.
func EnvironmentNames() []string {
	env := os.Environ()
	names := make([]string, 0, len(env))
	for _, kv := range env {
		if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
			names = append(names, name)
		}
	}
	return names
}
