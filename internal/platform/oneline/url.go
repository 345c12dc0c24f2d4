package oneline

import (
	"net/url"
	"slices"
	"strings"
)

// RedactedValue stands in for what URL hides.
const RedactedValue = "REDACTED"

// URL is raw as dvrelay may print it anywhere (a log line, a dead letter's description, a problem
// body, a command's output): every query value replaced by REDACTED, user info and the fragment
// dropped. A query can carry a secret under any name (a Functions key in ?code=, Dataverse's
// HttpQueryString auth under whatever name the registration chose, a downstream's API key), and a
// redirect's Location repeats the query of the URL it came from, so no list of known names is
// enough: every value goes, and only the names stay, to tell the URLs apart. A part of the query
// without a value may itself be the secret, and goes whole.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: keep only what precedes the query and the fragment, minus any user info.
		before, _, _ := strings.Cut(raw, "?")
		before, _, _ = strings.Cut(before, "#")
		return withoutUserInfo(before)
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	u.ForceQuery = false
	u.RawQuery = redactQuery(u.RawQuery)
	if u.Opaque != "" {
		// "host:port/path?…" parses as an opaque URL whose opaque part holds the rest.
		u.Opaque, _, _ = strings.Cut(u.Opaque, "?")
	}
	return u.String()
}

// redactQuery keeps the names of a query's parameters, each once and in order, with REDACTED
// for their values.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	var names []string
	bare := false
	for part := range strings.SplitSeq(raw, "&") {
		name, _, hasValue := strings.Cut(part, "=")
		if part == "" {
			continue
		}
		if !hasValue {
			bare = true
			continue
		}
		if n, err := url.QueryUnescape(name); err == nil && n != "" {
			names = append(names, url.QueryEscape(n)+"="+RedactedValue)
		} else {
			bare = true
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if bare {
		names = append(names, RedactedValue)
	}
	return strings.Join(names, "&")
}

// withoutUserInfo drops "user:password@" from the authority of a URL url.Parse refused.
func withoutUserInfo(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority = rest[:i]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}
