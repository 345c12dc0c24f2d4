package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClient_refuses_an_answer_past_its_bound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"deadLetters":[` + strings.Repeat(" ", 4096) + `]}`))
	}))
	t.Cleanup(srv.Close)
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), "x-dvrelay-secret", "")
	c.maxAnswer = 1024

	if _, err := c.ListDeadLetters(context.Background(), 10); !errors.Is(err, errTooLarge) {
		t.Errorf("err = %v, want %v", err, errTooLarge)
	}
}
