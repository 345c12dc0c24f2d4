package outbound_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/outbound"
)

func TestNewClient_refuses_redirects_naming_status_and_location(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var reached atomic.Int32
			other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
			defer other.Close()
			target := other.URL + "/elsewhere"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target, status)
			}))
			defer srv.Close()
			c := outbound.NewClient(outbound.Options{})
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/api?code=key", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer secret-token")

			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}

			var redirect *outbound.RedirectError
			if !errors.As(err, &redirect) {
				t.Fatalf("Do error = %v, want *outbound.RedirectError", err)
			}
			if redirect.Status != status || redirect.Location != target {
				t.Errorf("RedirectError = %+v, want {%d %s}", redirect, status, target)
			}
			if msg := redirect.Error(); !strings.Contains(msg, http.StatusText(status)) || !strings.Contains(msg, target) {
				t.Errorf("error %q does not name the status and the Location", msg)
			}
			if n := reached.Load(); n != 0 {
				t.Errorf("redirect target reached %d times, want never", n)
			}
		})
	}
}

func TestNewClient_cuts_a_body_longer_than_MaxResponseBytes(t *testing.T) {
	const limit = 16
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"shorter", limit - 1, false},
		{"exactly the limit", limit, false},
		{"one byte more", limit + 1, true},
		{"much more", 10 * limit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write(bytes.Repeat([]byte("x"), tt.size))
			}))
			defer srv.Close()
			c := outbound.NewClient(outbound.Options{MaxResponseBytes: limit})
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()

			body, err := io.ReadAll(resp.Body)

			if tt.wantErr {
				if !errors.Is(err, outbound.ErrResponseTooLarge) {
					t.Errorf("ReadAll error = %v, want ErrResponseTooLarge", err)
				}
				if len(body) > limit {
					t.Errorf("read %d bytes, want at most %d", len(body), limit)
				}
				return
			}
			if err != nil || len(body) != tt.size {
				t.Errorf("ReadAll = %d bytes, %v; want %d bytes", len(body), err, tt.size)
			}
		})
	}
}

func TestNewClient_gives_up_on_a_server_that_does_not_answer_within_Timeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c := outbound.NewClient(outbound.Options{Timeout: 50 * time.Millisecond})

	resp, err := c.Get(srv.URL)
	if resp != nil {
		resp.Body.Close()
	}

	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("Get error = %v, want a timeout", err)
	}
}

func TestReadLimited_reads_at_most_limit_bytes_and_says_when_it_cut(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		limit         int64
		want          string
		wantTruncated bool
	}{
		{"empty", "", 4, "", false},
		{"shorter", "abc", 4, "abc", false},
		{"exactly", "abcd", 4, "abcd", false},
		{"longer", "abcdef", 4, "abcd", true},
		{"zero limit, empty", "", 0, "", false},
		{"zero limit, something", "a", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated, err := outbound.ReadLimited(strings.NewReader(tt.in), tt.limit)
			if err != nil || string(got) != tt.want || truncated != tt.wantTruncated {
				t.Errorf("ReadLimited = %q, %v, %v; want %q, %v, nil", got, truncated, err, tt.want, tt.wantTruncated)
			}
		})
	}
}

func TestReadLimited_reports_a_read_error(t *testing.T) {
	boom := errors.New("connection reset")
	_, _, err := outbound.ReadLimited(iotest.ErrReader(boom), 4)
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want the reader's", err)
	}
}

func TestReadLimited_treats_a_body_the_client_cut_as_truncated(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "0123456789")
	}))
	defer srv.Close()
	c := outbound.NewClient(outbound.Options{MaxResponseBytes: 4})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	got, truncated, err := outbound.ReadLimited(resp.Body, 8)

	if err != nil || string(got) != "0123" || !truncated {
		t.Errorf("ReadLimited = %q, %v, %v; want %q, true, nil", got, truncated, err, "0123")
	}
}

// A worker running Concurrency calls at once to one host keeps every connection it opened:
// after the first round the calls reuse them instead of dialling again (net/http keeps only 2 idle
// per host by default, and closing the rest leaves sockets in TIME_WAIT at every call).
func TestNewClient_keeps_a_connection_per_concurrent_call_for_reuse(t *testing.T) {
	const concurrency, rounds = 64, 4
	var opened atomic.Int32
	arrived := make(chan struct{}, concurrency)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := outbound.NewClient(outbound.Options{Concurrency: concurrency})

	round := func() {
		t.Helper()
		release = make(chan struct{})
		errs := make(chan error, concurrency)
		for range concurrency {
			go func() {
				resp, err := c.Get(srv.URL)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				errs <- err
			}()
		}
		for range concurrency { // all calls in flight at once
			<-arrived
		}
		close(release)
		for range concurrency {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	round()
	first := opened.Load()
	for range rounds - 1 {
		round()
	}
	// A connection handed back a moment after its caller saw the body end can still miss the
	// next round, so a few redials are tolerated; without the pool sized to the concurrency,
	// every round redials concurrency - 16 of them.
	if again := opened.Load() - first; again >= concurrency/4 {
		t.Fatalf("opened %d connections in the first round and %d more in the next %d rounds; want the first ones reused",
			first, again, rounds-1)
	}
}

func TestNewClient_names_a_refused_redirect_without_the_query_it_repeats(t *testing.T) {
	const marker = "k3y-value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://user:"+marker+"@"+r.Host+r.URL.Path+"/?"+r.URL.RawQuery)
		w.WriteHeader(http.StatusMovedPermanently)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/erp?code="+marker, nil)
	_, err := outbound.NewClient(outbound.Options{}).Do(req)
	var redirect *outbound.RedirectError
	if !errors.As(err, &redirect) {
		t.Fatalf("err = %v, want a RedirectError", err)
	}
	if err := outbound.RedactError(err); strings.Contains(err.Error(), marker) || strings.Contains(redirect.Location, marker) {
		t.Errorf("the error %q (Location %q) carries the query's value", err, redirect.Location)
	}
	if !strings.Contains(err.Error(), "/erp/?code=REDACTED") {
		t.Errorf("the error %q no longer says where the redirect led", err)
	}
}
