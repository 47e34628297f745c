// Worker supervision: crash loops, failed boots, recycling, and the
// graceful timeout that bounds a stop.

package test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCrashLoopBackoff makes every new worker die right after boot: the
// master restarts the slot with doubling delays, and recovers once the cause
// is gone.
func TestCrashLoopBackoff(t *testing.T) {
	sw := filepath.Join(t.TempDir(), "crash")
	s := start(t, opts{workers: 1, bin: filepath.Join(binDir, "crashy"), noSites: true, env: []string{"CRASHY_SWITCH=" + sw}})
	if err := os.WriteFile(sw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(s.workers()[0], syscall.SIGKILL)
	s.waitLog(`worker died.*cause="?killed by SIGKILL`, 5*time.Second)
	var prev time.Duration
	for i := 0; i < 3; i++ {
		m := s.waitLog(`worker died.*cause="exited with status 1".*failed_boots=\d+ restart_in=(\S+)`, 10*time.Second)
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if prev != 0 && d != 2*prev {
			t.Fatalf("back-off went from %v to %v, want doubling", prev, d)
		}
		prev = d
	}
	os.Remove(sw)
	s.waitLog(`worker ready`, 10*time.Second)
	if code, body, err := get(s.addr, "/"); err != nil || code != 200 || body != "alive\n" {
		t.Fatalf("GET after recovery = %d %q %v", code, body, err)
	}
	select {
	case <-s.exited:
		t.Fatal("master exited during a crash loop after start-up")
	default:
	}
}

// TestCrashAtStartExitsThree: workers that crash at every boot before any
// was ready stop the master with exit code 3.
func TestCrashAtStartExitsThree(t *testing.T) {
	sw := filepath.Join(t.TempDir(), "crash")
	os.WriteFile(sw, nil, 0o644)
	s := start(t, opts{workers: 2, bin: filepath.Join(binDir, "crashy"), noSites: true, noWait: true, env: []string{"CRASHY_SWITCH=" + sw}})
	if code := s.waitExit(30 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	// The output is copied from a pipe: wait for the line.
	s.seen(`no worker could boot`, 10*time.Second)
}

// TestGracefulTimeoutBoundsTERM: a request longer than graceful_timeout
// does not hold the shutdown.
func TestGracefulTimeoutBoundsTERM(t *testing.T) {
	up := newHeldUpstream(t) // answers only when the test ends
	s := start(t, opts{workers: 1, extra: `graceful_timeout = "1s"`, sites: fmt.Sprintf(`site "x" {
  hosts = ["*"]
  route "/" {
    proxy { upstreams = ["%s"] }
  }
}`, up.addr)})
	// A client that waits as long as it takes: only graceful_timeout can
	// end this request before the test does.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-up.started
	s.signal(syscall.SIGTERM)
	s.waitLog(`graceful stop.*timeout=1s`, 10*time.Second)
	// The request is still held, so the master can only exit because the
	// worker's graceful_timeout ran out.
	if code := s.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestMaxRequestsReplacementFirst checks the order: the replacement is
// ready before the recycled worker stops accepting.
func TestMaxRequestsReplacementFirst(t *testing.T) {
	s := start(t, opts{workers: 1, extra: "max_requests = 5"})
	for i := 0; i < 5; i++ {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("GET %d: %d %v", i, code, err)
		}
	}
	m := s.waitLog(`worker reached max_requests.*worker_pid=(\d+)`, 5*time.Second)
	old := m[1]
	ready := s.waitLog(`worker ready: .*worker_pid=(\d+)`, 5*time.Second)
	if ready[1] == old {
		t.Fatalf("the recycled worker %s reported ready again", old)
	}
	s.waitLog(`stopping worker gracefully.*worker_pid=`+old+`.*cause=max_requests`, 5*time.Second)
}
