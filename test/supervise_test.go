// Worker supervision: crash loops, failed boots, recycling, and the
// graceful timeout that bounds a stop.

package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

func TestBootFailureExitsThree(t *testing.T) {
	// The configuration is valid (forkd -t cannot know what the start hook
	// will say), but every worker's OnWorkerStart hook fails.
	s := start(t, opts{workers: 2, noWait: true, bin: filepath.Join(binDir, "crashy"), sites: hookFailsSite})
	if code := s.waitExit(15 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3\n%s", code, s.logs.String())
	}
	// The output is copied from a pipe: wait for the line.
	s.seen(`hook refuses site hook-fails`, 10*time.Second)
}

func TestMaxRequestsRecycles(t *testing.T) {
	s := start(t, opts{workers: 1, extra: "max_requests = 20"})
	first := s.workers()[0]
	c := &http.Client{Timeout: clientTimeout}
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

// TestPausedMasterKillsNobody: a master stopped for longer than
// worker_timeout does not kill its healthy workers when it resumes.
func TestPausedMasterKillsNobody(t *testing.T) {
	s := start(t, opts{workers: 2, extra: `worker_timeout = "2s"`})
	before := s.workers()
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGSTOP)
	// The pause itself is the fault: twice worker_timeout.
	time.Sleep(4 * time.Second)
	s.signal(syscall.SIGCONT)
	s.waitLog(`master was not running`, 10*time.Second)
	load.progress(t, 200)
	// Two more heartbeat periods: a kill would have happened by now.
	load.progress(t, 200)
	load.finish(t)
	if s.logs.has(`timed out`) {
		t.Fatalf("a worker was killed for a timeout after the master's pause")
	}
	after := s.workers()
	if len(after) != 2 || !containsInt(after, before[0]) || !containsInt(after, before[1]) {
		t.Fatalf("workers before %v, after %v", before, after)
	}
}

// TestProcessNames: ps and pgrep show the role of every process.
func TestProcessNames(t *testing.T) {
	s := start(t, opts{workers: 2})
	comm := func(pid int) string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return strings.TrimSpace(string(b))
	}
	if c := comm(s.cmd.Process.Pid); c != "forkd: master" {
		t.Fatalf("master comm %q", c)
	}
	slots := map[string]bool{}
	for _, pid := range s.workers() {
		if c := comm(pid); c != "forkd: worker" {
			t.Fatalf("worker comm %q", c)
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv0, _, _ := strings.Cut(string(b), "\x00")
		m := regexp.MustCompile(`^forkd: worker gen 1 slot (\d)$`).FindStringSubmatch(argv0)
		if m == nil {
			t.Fatalf("worker argv[0] %q", argv0)
		}
		slots[m[1]] = true
	}
	if !slots["0"] || !slots["1"] {
		t.Fatalf("worker slots %v", slots)
	}
	out, err := exec.Command("pgrep", "-x", "-P", strconv.Itoa(s.cmd.Process.Pid), "forkd: worker").Output()
	if err != nil || len(strings.Fields(string(out))) != 2 {
		t.Fatalf("pgrep -x 'forkd: worker': %q %v", out, err)
	}
}

// TestPID1ReapsOrphans: as a container's init, forkd reaps the orphans
// reparented to it.
func TestPID1ReapsOrphans(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is required")
	}
	wrapper := filepath.Join(t.TempDir(), "crashy-pid1")
	script := "#!/bin/sh\nexec " + unshare + " --pid --fork --mount-proc --kill-child " + filepath.Join(binDir, "crashy") + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := start(t, opts{workers: 1, bin: wrapper, noSites: true})
	// unshare forks forkd, which is PID 1 in the new namespace.
	var master int
	eventually(t, 10*time.Second, "the master under unshare", func() bool {
		kids := children(s.cmd.Process.Pid)
		if len(kids) == 1 {
			master = kids[0]
		}
		return master != 0
	})
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", master)); !regexp.MustCompile(`NSpid:\s+\d+\s+1\n`).Match(b) {
		t.Fatalf("forkd is not PID 1 in its namespace:\n%s", b)
	}
	for i := 0; i < 5; i++ {
		if code, body, err := get(s.addr, "/orphan"); err != nil || code != 200 || body != "orphaned\n" {
			t.Fatalf("GET /orphan: %d %q %v", code, body, err)
		}
	}
	// Each orphan lives 0.2 s; once all have ended, none may stay a zombie.
	eventually(t, 10*time.Second, "orphans to be reaped", func() bool {
		return len(zombies(master)) == 0 && s.logs.has(`reaped an orphan`)
	})
}

// TestTaskLimitMasterSurvives: under RLIMIT_NPROC (a master running as
// nobody, like systemd's TasksMax), TTIN stops at the limit with a log line
// and the master keeps serving instead of aborting for want of a thread.
func TestTaskLimitMasterSurvives(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to run the master as nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv (util-linux) is required")
	}
	// nobody must reach the binary and the test's directory.
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(binDir, "forkd-nproc")
	script := `#!/bin/bash
dir=$(dirname "$2")
chmod 0777 "$dir" && chmod 0755 "$(dirname "$dir")" || exit 9
ulimit -u 40 || exit 9
exec ` + setpriv + ` --reuid=nobody --regid=nogroup --clear-groups ` + binary + ` "$@"
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := start(t, opts{workers: 2, bin: wrapper})
	for i := 0; i < 6; i++ {
		s.signal(syscall.SIGTTIN)
		if m := s.waitLog(`(not scaling up|scaling): .*workers=(\d+)`, 10*time.Second); m[1] == "not scaling up" {
			break
		}
		s.waitLog(`worker ready.*role=master`, 15*time.Second)
	}
	s.seen(`not scaling up: a task limit would be reached.*RLIMIT_NPROC \(40\)`, 10*time.Second)
	// More TTINs at the limit change nothing and hurt nothing.
	for i := 0; i < 3; i++ {
		s.signal(syscall.SIGTTIN)
		s.waitLog(`not scaling up`, 10*time.Second)
	}
	out, code := runCLI(t, "scale", "30", "-c", s.cfg)
	if code == 0 || !strings.Contains(out, "not scaling up") {
		t.Fatalf("scale 30 at the task limit: exit %d\n%s", code, out)
	}
	for i := 0; i < 20; i++ {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("GET at the task limit: %d %v", code, err)
		}
	}
	select {
	case <-s.exited:
		t.Fatalf("the master died at the task limit:\n%s", s.logs.String())
	default:
	}

	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
