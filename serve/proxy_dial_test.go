package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/testserver"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// pathUpstream answers every request on a connection with its path, until
// the proxy closes it.
func pathUpstream(c net.Conn) {
	c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		p := req.URL.Path
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(p), p); err != nil {
			return
		}
	}
}

// TestProxyOnLoopDial: with no idle upstream connection, the client's event
// loop connects without waiting (upstream's DialNow) and serves the whole
// exchange without a goroutine, connect included, over TCP and unix
// sockets; a connect refused, or not done within connect_timeout, is a
// failed dial (the next upstream is tried, and the one that failed
// blamed); a connect that takes its time holds the request until it is
// done.
func TestProxyOnLoopDial(t *testing.T) {
	var sent, responded, blocked atomic.Int64
	hs := func(*protocol.Request) { sent.Add(1) }
	testHookLoopSent.Store(&hs)
	hr := func() { responded.Add(1) }
	testHookLoopRespond.Store(&hr)
	hb := func() { blocked.Add(1) }
	testHookLoopBlocking.Store(&hb)
	t.Cleanup(func() {
		testHookLoopSent.Store(nil)
		testHookLoopRespond.Store(nil)
		testHookLoopBlocking.Store(nil)
	})

	refusedAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close() // nothing listens there now
		return a
	}
	type env struct {
		client   *loopClient
		backends []*backend
	}
	start := func(t *testing.T, px config.Proxy) *env {
		h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
			{Prefix: "/", Proxy: &px}}}}, Options{})
		_, addr := loopServer(t, h)
		sent.Store(0)
		responded.Store(0)
		blocked.Store(0)
		return &env{client: dialLoopClient(t, addr), backends: h.(*handler).proxies[0].backends}
	}
	getAll := func(t *testing.T, e *env, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if st, body := e.client.get(p); st != 200 || body != p {
				t.Fatalf("%s: %d %q", p, st, body)
			}
		}
	}
	// onLoop checks that n exchanges were served by the loop from the
	// connect to the response.
	onLoop := func(t *testing.T, n int64) {
		t.Helper()
		if s, r, b := sent.Load(), responded.Load(), blocked.Load(); s != n || r != n || b != 0 {
			t.Errorf("%d requests sent and %d responses sent by the loop, %d exchanges on a goroutine; want %d, %d, 0",
				s, r, b, n, n)
		}
	}

	for _, tc := range []struct {
		name             string
		keepalive, conns int
	}{
		{"every request dials", 0, 3},
		{"dialled once, then reused", 8, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := testserver.Start(t, pathUpstream)
			e := start(t, config.Proxy{Upstreams: []string{up.Addr}, Keepalive: tc.keepalive,
				ConnectTimeout: testTimeout, ResponseTimeout: testTimeout})
			getAll(t, e, "/a", "/b", "/c")
			onLoop(t, 3)
			if n := up.Conns(); n != int64(tc.conns) {
				t.Errorf("the upstream accepted %d connections, want %d", n, tc.conns)
			}
		})
	}
	t.Run("unix socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "up.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				pathUpstream(c)
				c.Close()
			}
		}()
		t.Cleanup(func() { ln.Close(); <-done })
		e := start(t, config.Proxy{Upstreams: []string{"unix:" + path}, Keepalive: 0,
			ConnectTimeout: testTimeout, ResponseTimeout: testTimeout})
		getAll(t, e, "/u", "/v")
		onLoop(t, 2)
	})
	t.Run("refused, next upstream", func(t *testing.T) {
		up := testserver.Start(t, pathUpstream)
		e := start(t, config.Proxy{Upstreams: []string{refusedAddr(t), up.Addr}, Keepalive: 0,
			ConnectTimeout: testTimeout, ResponseTimeout: testTimeout, MaxFails: 100})
		getAll(t, e, "/a", "/b", "/c", "/d")
		if n := e.backends[0].fails.Load(); n < 1 {
			t.Errorf("the refusing upstream was blamed %d times", n)
		}
	})
	t.Run("refused, none left", func(t *testing.T) {
		e := start(t, config.Proxy{Upstreams: []string{refusedAddr(t)}, Keepalive: 0,
			ConnectTimeout: testTimeout, ResponseTimeout: testTimeout})
		if st, _ := e.client.get("/a"); st != 502 {
			t.Fatalf("/a: %d, want 502", st)
		}
	})
	t.Run("connect_timeout, next upstream", func(t *testing.T) {
		up := testserver.Start(t, pathUpstream)
		e := start(t, config.Proxy{Upstreams: []string{testserver.Unanswered(t), up.Addr}, Keepalive: 0,
			ConnectTimeout: 100 * time.Millisecond, ResponseTimeout: testTimeout, MaxFails: 100})
		getAll(t, e, "/a", "/b", "/c")
		if n := e.backends[0].fails.Load(); n < 1 {
			t.Errorf("the upstream that never answered was blamed %d times", n)
		}
	})
	t.Run("connect_timeout, none left", func(t *testing.T) {
		e := start(t, config.Proxy{Upstreams: []string{testserver.Unanswered(t)}, Keepalive: 0,
			ConnectTimeout: 100 * time.Millisecond, ResponseTimeout: testTimeout})
		if st, _ := e.client.get("/a"); st != 502 {
			t.Fatalf("/a: %d, want 502", st)
		}
	})
	t.Run("connect that takes its time", func(t *testing.T) {
		h := testserver.Hold(t)
		// Keepalive 0: the proxy closes the connection after the
		// response, so that h's server, whose cleanup runs first, does
		// not wait for it.
		e := start(t, config.Proxy{Upstreams: []string{h.Addr}, Keepalive: 0,
			ConnectTimeout: testTimeout, ResponseTimeout: testTimeout})
		e.client.send("/late")
		// Served once the request waits on the loop for its connect.
		for deadline := time.Now().Add(testTimeout); e.backends[0].active.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the request never reached the proxy")
			}
		}
		h.Serve(pathUpstream)
		st, body, err := e.client.read()
		if err != nil || st != 200 || body != "/late" {
			t.Fatalf("/late: %d %q %v", st, body, err)
		}
		onLoop(t, 1)
	})
	// smallUpstream listens with the smallest receive buffer there is and
	// hands its first connection to fn; bigServer serves the proxy to it
	// with room for heads of 8 MiB, and returns a client and the backend.
	smallUpstream := func(t *testing.T, fn func(c net.Conn)) string {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		}}
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			fn(c)
		}()
		t.Cleanup(func() { ln.Close(); <-done })
		return ln.Addr().String()
	}
	bigServer := func(t *testing.T, px config.Proxy) (*loopClient, *backend) {
		h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
			{Prefix: "/", Proxy: &px}}}}, Options{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lim := protocol.DefaultLimits()
		lim.HeaderBytes = 8 << 20
		runServer(t, &protocol.Server{Handler: h, Limits: lim, Logger: hclog.NewNullLogger()}, ln, protocol.ListenOptions{})
		sent.Store(0)
		responded.Store(0)
		blocked.Store(0)
		return dialLoopClient(t, ln.Addr().String()), h.(*handler).proxies[0].backends[0]
	}
	// A head of 6 MiB is more than both sockets' buffers hold (the
	// proxy's grows to tcp_wmem's 4 MiB at most): SendNow leaves most of
	// it.
	sendBig := func(t *testing.T, client *loopClient, b *backend) {
		big := strings.Repeat("b", 6<<20)
		go fmt.Fprintf(client.c, "GET /big HTTP/1.1\r\nHost: p\r\nX-Big: %s\r\n\r\n", big)
		for deadline := time.Now().Add(testTimeout); b.active.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the request never reached the proxy")
			}
		}
	}
	t.Run("request the socket takes in parts", func(t *testing.T) {
		// The upstream reads nothing until told, and then not before
		// connect_timeout has passed: the loop sends the rest at the
		// events that say there is room, and the connection, which is
		// up, waits response_timeout, not connect_timeout.
		const connectTimeout = 100 * time.Millisecond
		goOn := make(chan struct{})
		addr := smallUpstream(t, func(c net.Conn) {
			select {
			case <-goOn:
				time.Sleep(3 * connectTimeout)
				pathUpstream(c)
			case <-time.After(testTimeout):
			}
		})
		client, b := bigServer(t, config.Proxy{Upstreams: []string{addr}, Keepalive: 0,
			ConnectTimeout: connectTimeout, ResponseTimeout: testTimeout})
		sendBig(t, client, b)
		if n := sent.Load(); n != 0 {
			t.Fatal("6 MiB went out with the first write")
		}
		close(goOn)
		st, body, err := client.read()
		if err != nil || st != 200 || body != "/big" {
			t.Fatalf("/big: %d %q %v", st, body, err)
		}
		onLoop(t, 1)
	})
	t.Run("early answer while the request waits", func(t *testing.T) {
		// The upstream answers at once and reads nothing: its answer's
		// event brings no room, and the goroutine takes over, as Do's
		// early answers: the write waits response_timeout, then the
		// answer is passed on.
		quit := make(chan struct{})
		addr := smallUpstream(t, func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig\n")
			<-quit
		})
		t.Cleanup(func() { close(quit) }) // before smallUpstream's cleanup waits for it
		client, _ := bigServer(t, config.Proxy{Upstreams: []string{addr}, Keepalive: 0,
			ConnectTimeout: testTimeout, ResponseTimeout: 300 * time.Millisecond})
		go fmt.Fprintf(client.c, "GET /big HTTP/1.1\r\nHost: p\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 6<<20))
		st, body, err := client.read()
		if err != nil || st != 413 || body != "big\n" {
			t.Fatalf("/big: %d %q %v", st, body, err)
		}
		if n := blocked.Load(); n != 1 {
			t.Errorf("%d exchanges went on on a goroutine, want 1", n)
		}
	})
}
