package config_test

import (
	"strings"
	"testing"

	"github.com/dvrelay/dvrelay/internal/config"
)

func TestLoad_requires_DATAVERSE_URL_to_be_an_https_root_except_on_loopback(t *testing.T) {
	tests := []struct {
		url  string
		want string // the root Load keeps; empty when the value is refused
	}{
		{"https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"},
		{"https://contoso.crm.dynamics.com/", "https://contoso.crm.dynamics.com"},
		{" https://contoso.crm.dynamics.com ", "https://contoso.crm.dynamics.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"http://localhost:8080", "http://localhost:8080"},
		{"http://contoso.crm.dynamics.com", ""},
		{"http://10.0.0.5", ""},
		{"ftp://contoso.crm.dynamics.com", ""},
		{"https://contoso.crm.dynamics.com/api/data", ""},
		{"https://contoso.crm.dynamics.com?x=1", ""},
		{"https://user:pw@contoso.crm.dynamics.com", ""},
		{"contoso.crm.dynamics.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := config.Load(lookupFrom(map[string]string{"DATAVERSE_URL": tt.url}))
			if tt.want != "" {
				if err != nil || c.DataverseURL != tt.want {
					t.Fatalf("DataverseURL = %q, %v; want %q", c.DataverseURL, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load accepted DATAVERSE_URL %q", tt.url)
			}
			if !strings.HasPrefix(err.Error(), "DATAVERSE_URL: ") || strings.Count(err.Error(), "DATAVERSE_URL") != 1 {
				t.Errorf("error %q should name DATAVERSE_URL once, at its start", err)
			}
		})
	}
}

func TestLoad_leaves_DATAVERSE_URL_empty_when_unset(t *testing.T) {
	c, err := config.Load(lookupFrom(nil))
	if err != nil || c.DataverseURL != "" {
		t.Fatalf("DataverseURL = %q, %v; want empty and no error", c.DataverseURL, err)
	}
}

func TestLoad_names_a_bad_DATAVERSE_URL_among_the_other_bad_settings(t *testing.T) {
	_, err := config.Load(lookupFrom(map[string]string{
		"DATAVERSE_URL":     "http://example.com",
		"DVRELAY_LOG_LEVEL": "loud",
	}))
	want := `DATAVERSE_URL: "http://example.com" must use https (plain http is only allowed on a loopback address)`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "DVRELAY_LOG_LEVEL") {
		t.Errorf("error = %v, want both settings named, the URL's as %q", err, want)
	}
}
