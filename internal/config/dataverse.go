package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckDataverseURL checks a Dataverse environment URL (DATAVERSE_URL, or an operator
// command's --dataverse-url) and returns its root, scheme://host with no trailing slash, which
// is also the token's audience. It must be https: the requests carry a bearer token. Plain http
// is allowed on a loopback address only, where local test doubles listen. The errors quote the
// value but not the setting's name, which the caller adds once.
func CheckDataverseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("%q is not a URL (e.g. https://contoso.crm.dynamics.com)", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host (e.g. https://contoso.crm.dynamics.com)", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("%q must use https (plain http is only allowed on a loopback address)", raw)
		}
	default:
		return "", fmt.Errorf("%q must use https", raw)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q must be the environment root, without a path, query or user", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dataverseURL reads DATAVERSE_URL: empty when unset (the Dataverse steps are then skipped),
// else the checked environment root. A refused value is kept as given, beside Load's error, so
// that each field still shows which setting it came from.
func (r *reader) dataverseURL(name string) string {
	raw := r.str(name, "")
	if raw == "" {
		return ""
	}
	root, err := CheckDataverseURL(raw)
	if err != nil {
		r.fail(name, err.Error())
		return raw
	}
	return root
}
