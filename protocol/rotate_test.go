package protocol

import (
	"io"
	"runtime"
	"testing"
)

// TestRotation: a loop goes to the back of a listener's waiters every
// rotateEvery accepts when others may share its wake-ups (other processes,
// Processes not 1; or another loop of the same server), and not when it is
// the listener's only waiter (Processes 1, one loop), where the two
// epoll_ctl calls would be for nothing. Both ways of accepting: a direct
// loop (GOMAXPROCS=2) and Serve's acceptor for a polled loop
// (GOMAXPROCS=1).
func TestRotation(t *testing.T) {
	const conns = 2*rotateEvery + 3
	for _, tc := range []struct {
		name      string
		procs     int // GOMAXPROCS: 1 polled loop, 2 one direct loop, 3 two
		processes int
		rotations func(uint64) bool
		want      string
	}{
		{"one direct loop, only process", 2, 1, func(n uint64) bool { return n == 0 }, "0"},
		{"one direct loop, processes unknown", 2, 0, func(n uint64) bool { return n == 2 }, "2"},
		{"one direct loop, four processes", 2, 4, func(n uint64) bool { return n == 2 }, "2"},
		{"polled loop, only process", 1, 1, func(n uint64) bool { return n == 0 }, "0"},
		{"polled loop, four processes", 1, 4, func(n uint64) bool { return n == 2 }, "2"},
		{"two direct loops, only process", 3, 1, func(n uint64) bool { return n >= 1 }, "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := runtime.GOMAXPROCS(tc.procs)
			defer runtime.GOMAXPROCS(prev)
			hello := HandlerFunc(func(w *ResponseWriter, r *Request) { io.WriteString(w, "hi") })
			s, addr := startServer(t, hello, func(s *Server) { s.Processes = tc.processes })
			for i := range conns {
				c := dial(t, addr)
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				if err != nil || len(b) == 0 || b[len(b)-2] != 'h' {
					t.Fatalf("connection %d: %q %v", i, b, err)
				}
				c.Close()
			}
			if n := s.rotations.Load(); !tc.rotations(n) {
				t.Errorf("%d rotations after %d connections, want %s", n, conns, tc.want)
			}
		})
	}
}
