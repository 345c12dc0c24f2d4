package oneline_test

import (
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/platform/oneline"
)

func TestURL_hides_every_query_value_user_info_and_fragment(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"http://erp.example/erp?code=k3y-value", "http://erp.example/erp?code=REDACTED"},
		{"https://app.example/hook?x=1&code=k3y-value&x=2", "https://app.example/hook?code=REDACTED&x=REDACTED"},
		{"https://user:k3y-value@app.example/hook", "https://app.example/hook"},
		{"https://app.example/hook?k3y-value", "https://app.example/hook?REDACTED"},
		{"https://app.example/hook?a=1&k3y-value", "https://app.example/hook?a=REDACTED&REDACTED"},
		{"https://app.example/cb#access_token=k3y-value", "https://app.example/cb"},
		{"https://app.example/hook", "https://app.example/hook"},
		{"/relative/path?code=k3y-value", "/relative/path?code=REDACTED"},
		{"erp.example:8080/erp?code=k3y-value", "erp.example:8080/erp?code=REDACTED"},
		{"https://app.example/%zz?code=k3y-value", "https://app.example/%zz"},
		{"https://user:k3y-value@app.example/%zz?code=x", "https://app.example/%zz"},
		{"https://app.example/hook?%zz=k3y-value", "https://app.example/hook?REDACTED"},
	} {
		got := oneline.URL(tc.raw)
		if got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		if strings.Contains(got, "k3y-value") {
			t.Errorf("URL(%q) leaks the secret", tc.raw)
		}
	}
}

func FuzzURL_never_keeps_a_query_value(f *testing.F) {
	f.Add("http://h/p", "code", "?")
	f.Add("h:1/p", "", "#")
	f.Add("https://u:p@h/%zz", "a&b", "?")
	f.Fuzz(func(t *testing.T, base, name, sep string) {
		const marker = "s3cret"
		if strings.Contains(base+name, marker) || (sep != "?" && sep != "#") {
			return
		}
		raw := base + sep + name + "=" + marker
		if got := oneline.URL(raw); strings.Contains(got, marker) {
			t.Errorf("URL(%q) = %q keeps the value", raw, got)
		}
	})
}
