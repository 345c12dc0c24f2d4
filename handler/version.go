package main

import (
	"runtime/debug"
	"strings"
)

// version says which build this is, from what the go tool stamps into every binary: the module
// version when built from a tagged module, and the commit (with "-dirty" for local changes)
// when built from a checkout, as go build and handler package do.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "handler (no build information)"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, when string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	parts := []string{"handler", v}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		parts = append(parts, "commit "+rev)
	}
	if when != "" {
		parts = append(parts, "("+when+")")
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, " ")
}
