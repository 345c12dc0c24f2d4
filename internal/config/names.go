package config

// SettingNames lists every setting Load (and LoadConsole) reads, in the order it reads them. It is derived from
// Load itself, through a lookup that records each name it is asked for, so deployment files
// can be checked against it without a second list to keep in step. It relies on Load asking for
// every setting on every call, even when unset, which it does so that one run reports every
// bad value at once.
func SettingNames() []string {
	var names []string
	seen := map[string]bool{}
	record := func(name string) (string, bool) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return "", false
	}
	_, _ = Load(record)
	_, _ = Config{routeVariables: record}.StrictRoutes()
	_, _ = LoadConsole(record)
	return names
}
