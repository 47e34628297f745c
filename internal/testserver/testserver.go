// Package testserver runs loopback TCP servers for tests (upstreams that
// misbehave on purpose, raw peers): each accepted connection is handed to
// a function on a goroutine of its own and closed when it returns. The
// server closes its listener and waits for every connection's goroutine
// when the test ends.
package testserver

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Server is a running loopback server.
type Server struct {
	Addr  string // host:port
	conns atomic.Int64
}

// Start serves fn on a new loopback listener until t ends.
func Start(t testing.TB, fn func(c net.Conn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ln, fn)
}

// serve serves fn on ln until t ends, and closes ln then.
func serve(t testing.TB, ln net.Listener, fn func(c net.Conn)) *Server {
	s := &Server{Addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return s
}

// Conns is how many connections the server has accepted.
func (s *Server) Conns() int64 { return s.conns.Load() }
