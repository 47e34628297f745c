package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

func TestKillWorkerIsReplaced(t *testing.T) {
	s := start(t, opts{workers: 2})
	victim := s.workers()[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m := s.waitLog(`worker died.*cause="?killed by SIGKILL.*`, 5*time.Second)
	// Replaced at once: a worker killed this soon after boot counts as a
	// first failed boot, whose back-off is the shortest step, never more.
	if r := regexp.MustCompile(`restart_in=(\S+)`).FindStringSubmatch(m[0]); r != nil && r[1] != "100ms" {
		t.Errorf("replacement delayed by %s: %s", r[1], m[0])
	}
	s.waitLog(`worker ready`, 5*time.Second)
	eventually(t, 5*time.Second, "two workers again", func() bool {
		ws := s.workers()
		return len(ws) == 2 && ws[0] != victim && ws[1] != victim
	})
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after replacement: %d %v", code, err)
	}
}

func TestStoppedWorkerTimesOut(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `worker_timeout = "1s"`})
	victim := s.workers()[0]
	if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	s.waitLog(`worker timed out`, 5*time.Second)
	s.waitLog(`worker ready`, 5*time.Second)
	eventually(t, 5*time.Second, "the stopped worker to be gone", func() bool { return !alive(victim) })
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after replacement: %d %v", code, err)
	}
}

func TestKillMasterLeavesNoOrphans(t *testing.T) {
	s := start(t, opts{workers: 3})
	ws := s.workers()
	if len(ws) != 3 {
		t.Fatalf("%d workers, want 3", len(ws))
	}
	s.signal(syscall.SIGKILL)
	s.waitExit(5 * time.Second)
	eventually(t, 2*time.Second, "every worker to exit", func() bool {
		for _, pid := range ws {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

func TestTTINTTOU(t *testing.T) {
	s := start(t, opts{workers: 2})
	s.signal(syscall.SIGTTIN)
	s.waitLog(`scaling.*workers=3`, 5*time.Second)
	eventually(t, 5*time.Second, "3 workers", func() bool { return len(s.workers()) == 3 })
	// Standard signals are not queued: send one at a time.
	s.signal(syscall.SIGTTOU)
	s.waitLog(`scaling.*workers=2`, 5*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitLog(`scaling.*workers=1`, 5*time.Second)
	eventually(t, 5*time.Second, "1 worker", func() bool { return len(s.workers()) == 1 })
	s.signal(syscall.SIGTTOU) // never below one
	s.waitLog(`scaling.*workers=1`, 5*time.Second)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	if n := len(s.workers()); n != 1 {
		t.Fatalf("%d workers after TTOU below one, want 1", n)
	}
}

func TestBootFailureExitsThree(t *testing.T) {
	// The configuration is valid (forkd -t cannot know what the start hook
	// will say), but every worker's OnWorkerStart hook fails.
	s := start(t, opts{workers: 2, noWait: true, bin: filepath.Join(binDir, "crashy"), sites: hookFailsSite})
	if code := s.waitExit(15 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3\n%s", code, s.logs.String())
	}
	if !s.logs.has(`hook refuses site hook-fails`) {
		t.Fatalf("the worker's error is not in the output:\n%s", s.logs.String())
	}
}

// TestMissingStaticRootExitsOne: what forkd -t can see is refused before
// any worker starts, with file:line.
func TestMissingStaticRootExitsOne(t *testing.T) {
	s := start(t, opts{workers: 2, noWait: true, sites: `site "x" {
  hosts = ["*"]
  route "/" {
    static {
      root = "./does-not-exist"
    }
  }
}`})
	if code := s.waitExit(15 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, s.logs.String())
	}
	// The output pipe may still be draining when the exit is seen: wait
	// for the line rather than look once.
	s.seen(`config\.hcl:\d+.*does-not-exist`, 10*time.Second)
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

func TestHUPWithBrokenConfigKeepsServing(t *testing.T) {
	s := start(t, opts{workers: 2})
	before := s.workers()
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nworkers = \"many\"\nbogus_key = 1\n")
	s.signal(syscall.SIGHUP)
	m := s.waitLog(`reload refused.*(config\.hcl:\d+)`, 5*time.Second)
	if !strings.Contains(m[0], "config.hcl:") {
		t.Fatalf("no file:line in %q", m[0])
	}
	if code, body, err := get(s.addr, "/"); err != nil || code != 200 || body != "hello\n" {
		t.Fatalf("GET after refused reload: %d %q %v", code, body, err)
	}
	after := s.workers()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("workers changed after a refused reload: %v -> %v", before, after)
	}
	// A fixed file reloads.
	s.rewrite(strings.Replace(string(good), `body = "hello\n"`, `body = "v2\n"`, 1))
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 10*time.Second)
	eventually(t, 10*time.Second, "old workers gone", func() bool {
		for _, pid := range before {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	if _, body, _ := get(s.addr, "/"); body != "v2\n" {
		t.Fatalf("after reload body = %q, want v2", body)
	}
}

// TestHUPUnderLoadLosesNothing reloads several times while clients send
// requests over keep-alive and fresh connections; none may fail.
func TestHUPUnderLoadLosesNothing(t *testing.T) {
	s := start(t, opts{workers: 2})
	load := startLoad(s.addr, 8)
	for gen := 2; gen <= 11; gen++ {
		load.progress(t, 200)
		s.signal(syscall.SIGHUP)
		s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, gen), 15*time.Second)
	}
	// Let the last generation's predecessors drain under load too.
	s.waitLog(`worker stopped.*worker_generation=10`, 15*time.Second)
	load.progress(t, 200)
	load.finish(t)
}

func TestUSR1ReopensLogs(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "forkd.log")
	accessPath := filepath.Join(dir, "access.log")
	s := start(t, opts{workers: 2, extra: fmt.Sprintf(`log {
  level = "info"
  file = "%s"
  access = "%s"
}`, logPath, accessPath), noWait: true})
	eventually(t, 15*time.Second, "workers ready in the log file", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "worker ready") >= 2
	})
	if code, _, err := get(s.addr, "/first"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	eventually(t, 5*time.Second, "access line", func() bool {
		b, _ := os.ReadFile(accessPath)
		return strings.Contains(string(b), "/first")
	})
	// logrotate: move both files away, then USR1.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(accessPath, accessPath+".1"); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	eventually(t, 5*time.Second, "a new log file with the reopen line", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "log files reopened")
	})
	eventually(t, 5*time.Second, "every worker to reopen", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "log files reopened") >= 3
	})
	if code, _, err := get(s.addr, "/second"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	eventually(t, 5*time.Second, "the new access log to get the request", func() bool {
		b, _ := os.ReadFile(accessPath)
		return strings.Contains(string(b), "/second")
	})
	old, _ := os.ReadFile(accessPath + ".1")
	if strings.Contains(string(old), "/second") {
		t.Fatal("request logged to the rotated file")
	}
}

func TestMaxRequestsRecycles(t *testing.T) {
	s := start(t, opts{workers: 1, extra: "max_requests = 20"})
	first := s.workers()[0]
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 60; i++ {
		resp, err := c.Get("http://" + s.addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	s.waitLog(`max_requests reached`, 5*time.Second)
	s.waitLog(`worker stopped.*cause=max_requests`, 10*time.Second)
	eventually(t, 10*time.Second, "the first worker to be recycled", func() bool { return !alive(first) })
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
