package serve

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// loopServer serves h on a new loopback listener with event loops, and
// returns the server and its address; the test shuts it down when it
// likes (Close at the end otherwise).
func loopServer(t *testing.T, h protocol.Handler) (*protocol.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &protocol.Server{Handler: h, Limits: protocol.DefaultLimits(), Logger: hclog.NewNullLogger()}
	runServer(t, srv, ln, protocol.ListenOptions{})
	return srv, ln.Addr().String()
}

// TestProxyLoopWatchShutdown: idle upstream connections are watched by the
// event loop of the client they served; a Shutdown ends that loop while
// one exchange is still under way and another connection idles. The
// exchange finishes, its connection is pooled all the same (the ended loop
// refuses it; the pool's own watch takes it), and the same routes served
// by another server afterwards never get an idle connection's stray bytes
// as their response, whichever watch (or Get's peek) catches them.
func TestProxyLoopWatchShutdown(t *testing.T) {
	gate := make(chan struct{})
	strayNow := make(chan struct{})
	strayed := make(chan struct{})
	var pairs sync.WaitGroup
	pairs.Add(2)
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		switch req.URL.Path {
		case "/slow":
			select {
			case <-gate:
			case <-time.After(testTimeout):
				return false
			}
		case "/pair":
			// Two at once: both idle connections are taken.
			pairs.Done()
			pairs.Wait()
		case "/stray":
			// Answer, then, once the test says so, send a second response
			// on the idle connection.
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return false
			}
			select {
			case <-strayNow:
			case <-time.After(testTimeout):
				return false
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
			close(strayed) // on loopback the bytes are with the proxy now
			return true
		}
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return err == nil
	})
	h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{up.addr}, Keepalive: 8,
			RetryBodyBuffer: config.DefaultRetryBodyBuffer}},
	}}}, Options{})
	// /probe hands the test its connection's loop, to see when it ends.
	probe := make(chan protocol.SocketWatcher, 1)
	wrapped := protocol.Nonblocking(protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		if string(r.Path) == "/probe" {
			probe <- w.SocketWatcher()
			_, _ = w.WriteString("ok")
			return
		}
		h.Serve(w, r)
	}))
	srv, addr := loopServer(t, wrapped)
	client := func(addr, path string) (int, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	slow := make(chan string, 1)
	go func() {
		_, body := client(addr, "/slow")
		slow <- body
	}()
	for deadline := time.Now().Add(testTimeout); up.requests.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream got no request")
		}
	}
	// A second upstream connection, idle and watched by the loop.
	if st, body := client(addr, "/stray"); st != 200 || body != "ok" {
		t.Fatalf("/stray: %d %q", st, body)
	}
	if st, _ := client(addr, "/probe"); st != 200 {
		t.Fatalf("/probe: %d", st)
	}
	loop := <-probe
	if loop == nil {
		t.Fatal("no event loop")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// The loops end as Shutdown begins; the exchange on the upstream goes
	// on, and its connection is pooled afterwards, though the loop is gone.
	waitLoopEnded(t, loop)
	close(gate)
	if body := <-slow; body != "ok" {
		t.Fatalf("/slow across the Shutdown: %q", body)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// Stray bytes on the connection the ended loop watched: only Get's
	// peek can see them now.
	close(strayNow)
	<-strayed
	_, addr2 := loopServer(t, wrapped)
	got := make(chan string, 2)
	for range 2 {
		go func() {
			_, body := client(addr2, "/pair")
			got <- body
		}()
	}
	for range 2 {
		if body := <-got; body != "ok" {
			t.Fatalf("after the Shutdown: %q", body)
		}
	}
	for i := range 4 {
		if st, body := client(addr2, "/"); st != 200 || body != "ok" {
			t.Fatalf("request %d after the Shutdown: %d %q", i, st, body)
		}
	}
}

// waitLoopEnded waits until sw, an event loop, refuses sockets: it has
// ended.
func waitLoopEnded(t *testing.T, sw protocol.SocketWatcher) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	deadline := time.Now().Add(testTimeout)
	for {
		key, err := sw.Watch(fds[0], func(bool) {})
		if err != nil {
			return
		}
		sw.Unwatch(key, fds[0])
		if time.Now().After(deadline) {
			t.Fatal("the loop did not end")
		}
		time.Sleep(time.Millisecond)
	}
}
