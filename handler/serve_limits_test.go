package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// cappedServer serves 200 on a listener capped at n connections. Its idle and header timeouts
// are an hour, so only the cap's own shedding can free a slot within a test.
func cappedServer(t *testing.T, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		ReadHeaderTimeout: time.Hour,
		IdleTimeout:       time.Hour,
	}
	go func() { _ = srv.Serve(capConnections(ln, srv, n)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// get sends one request on conn and reads its answer, waiting at most a generous bound.
func get(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	return resp
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCapConnections_gives_the_slots_of_idle_keep_alive_connections_to_waiting_callers(t *testing.T) {
	addr := cappedServer(t, 2)
	// Two callers take every slot with a request each, then keep their connections idle.
	idle := []net.Conn{dial(t, addr), dial(t, addr)}
	for _, c := range idle {
		get(t, c)
	}
	// A third caller waits in the backlog; it is served without waiting for the idle ones to
	// time out (an hour here).
	if resp := get(t, dial(t, addr)); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i, c := range idle {
		if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("idle connection %d still open (read %d bytes)", i, n)
		}
	}
}

func TestCapConnections_keeps_connections_alive_again_once_slots_are_free(t *testing.T) {
	addr := cappedServer(t, 4)
	var conns []net.Conn
	for range 4 {
		c := dial(t, addr)
		get(t, c)
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	// With every slot free again, a new caller's connection is kept alive for its next request.
	c := dial(t, addr)
	deadline := time.Now().Add(20 * time.Second)
	for get(t, c).Close {
		// The server learns of the closed connections a moment after the clients close them.
		if time.Now().After(deadline) {
			t.Fatal("keep-alive stayed off with every slot free")
		}
		c = dial(t, addr)
		time.Sleep(10 * time.Millisecond)
	}
	if resp := get(t, c); resp.StatusCode != http.StatusOK {
		t.Errorf("second request on a kept-alive connection: status %d", resp.StatusCode)
	}
}
