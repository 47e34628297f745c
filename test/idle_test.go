package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestIdleConnectionsCost holds a few thousand idle keep-alive connections
// (each answered once, then left open) on one worker and checks that each
// costs the worker a few KiB of resident memory at most: a connection
// waiting for its next request waits on an event loop with neither
// buffers nor a goroutine, on a respond route (LoopSafe, served on the
// loops) and in an embedded net/http app (served off the loops, idle
// connections go back to them). Before that, they cost about 10 and 15.5
// KiB; the bound (8 KiB) is loose, so that the garbage collector's timing
// cannot make the test flake: the stacks of goroutines that ended stay
// resident until the next collection, and an idle worker makes none.
func TestIdleConnectionsCost(t *testing.T) {
	n := idleConns(t, 3000)
	cases := []struct {
		name, bin, path string
	}{
		{"respond", "", "/"},
		{"nethttp", "nethttp", "/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts{workers: 1, extra: fmt.Sprintf("limits {\n  max_connections = %d\n}\n", n+1024)}
			if c.bin != "" {
				o.bin, o.noSites = filepath.Join(binDir, c.bin), true
			}
			s := start(t, o)
			w := s.workers()
			if len(w) != 1 {
				t.Fatalf("workers %v, want one", w)
			}
			// Warm up: pooled state, the loops' tables, the runtime.
			var warm []net.Conn
			for range 64 {
				warm = append(warm, idleOpen(t, s.addr, c.path))
			}
			for _, nc := range warm {
				nc.Close()
			}
			before := vmRSS(t, w[0])
			conns := make([]net.Conn, n)
			defer func() {
				for _, nc := range conns {
					if nc != nil {
						nc.Close()
					}
				}
			}()
			var wg sync.WaitGroup
			next := make(chan int)
			for range 32 {
				wg.Go(func() {
					for i := range next {
						conns[i] = idleOpen(t, s.addr, c.path)
					}
				})
			}
			for i := range n {
				next <- i
			}
			close(next)
			wg.Wait()
			if t.Failed() {
				return
			}
			// An embedded app's connection goes back to a loop 50 ms after
			// its answer: wait for the cost to come down to the bound.
			var per int64
			deadline := time.Now().Add(30 * time.Second)
			for {
				per = (vmRSS(t, w[0]) - before) * 1024 / int64(n)
				if per <= 8<<10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d idle connections cost %d bytes of RSS each after 30 s, want at most 8 KiB: they hold buffers or goroutines", n, per)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%d idle connections: %d bytes of RSS each", n, per)
		})
	}
}

// idleConns returns how many idle connections a test may open: want, or
// what the descriptor limit leaves room for. The soft limit goes up to the
// hard one (as root, the hard one too) first.
func idleConns(t *testing.T, want int) int {
	t.Helper()
	need := uint64(want + 512)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < need {
		up := lim
		up.Max, up.Cur = need, need
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			lim = up
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	n := min(want, int(lim.Cur)-512)
	if n < 500 {
		t.Fatalf("RLIMIT_NOFILE %d leaves room for %d connections; raise it to %d", lim.Cur, n, need)
	}
	return n
}

// idleOpen opens a connection, makes one request on it and reads the
// answer, leaving the connection open.
func idleOpen(t *testing.T, addr, path string) net.Conn {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		t.Error(err)
		return nil
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: idle\r\n\r\n"); err != nil {
		t.Error(err)
		return nc
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Error(err)
		return nc
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Errorf("GET %s: %d, close %v", path, resp.StatusCode, resp.Close)
	}
	nc.SetDeadline(time.Time{})
	return nc
}

// vmRSS is pid's resident memory in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
