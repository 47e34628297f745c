// Stopping: TERM finishes what is in flight, QUIT is quick, WINCH stops the workers.

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServesAndStopsWithTERM(t *testing.T) {
	s := start(t, opts{workers: 2})
	code, body, err := get(s.addr, "/")
	if err != nil || code != 200 || body != "hello\n" {
		t.Fatalf("GET / = %d %q %v", code, body, err)
	}
	if n := len(s.workers()); n != 2 {
		t.Fatalf("%d workers, want 2", n)
	}
	pid, _ := os.ReadFile(filepath.Join(s.dir, "forkd.pid"))
	if strings.TrimSpace(string(pid)) != strconv.Itoa(s.cmd.Process.Pid) {
		t.Fatalf("pidfile holds %q, master is %d", pid, s.cmd.Process.Pid)
	}
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after TERM, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "forkd.pid")); !os.IsNotExist(err) {
		t.Fatalf("pidfile still there after exit: %v", err)
	}
}

func TestQuickStop(t *testing.T) {
	s := start(t, opts{workers: 2})
	ws := s.workers()
	s.signal(syscall.SIGINT)
	if code := s.waitExit(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after INT, want 0", code)
	}
	for _, pid := range ws {
		if alive(pid) {
			t.Errorf("worker %d outlived its master", pid)
		}
	}
}

func TestWINCHStopsWorkersKeepsMaster(t *testing.T) {
	s := start(t, opts{workers: 2})
	s.signal(syscall.SIGWINCH)
	eventually(t, 10*time.Second, "no workers", func() bool { return len(s.workers()) == 0 })
	select {
	case <-s.exited:
		t.Fatal("master exited after WINCH")
	default:
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 10*time.Second)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after HUP: %d %v", code, err)
	}
}

// TestTERMFinishesRequestInFlight starts a slow proxied request, sends TERM,
// lets the upstream answer once the worker is draining, and checks the
// response arrives complete and the master exits 0.
func TestTERMFinishesRequestInFlight(t *testing.T) {
	up := newHeldUpstream(t)
	s := start(t, opts{workers: 1, sites: fmt.Sprintf(`site "x" {
  hosts = ["*"]
  route "/" {
    proxy { upstreams = ["%s"] }
  }
}`, up.addr)})
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, body, err := get(s.addr, "/slow")
		done <- result{code, body, err}
	}()
	<-up.started // the request is in the worker and at the upstream
	s.signal(syscall.SIGTERM)
	s.waitLog(`graceful stop`, 10*time.Second)
	up.answer()
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "slow done\n" {
		t.Fatalf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d after TERM, want 0", code)
	}
}
