package test

import (
	"bufio"
	"encoding/json"
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

// statusJSON is what `forkd status -json` says, in the parts these tests
// look at.
type statusJSON struct {
	OK     bool `json:"ok"`
	Status struct {
		MasterPID  int    `json:"master_pid"`
		Generation int    `json:"generation"`
		State      string `json:"state"`
		Reloading  bool   `json:"reloading"`
		LastReload *struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"last_reload"`
		Workers []struct {
			Slot       int    `json:"slot"`
			PID        int    `json:"pid"`
			Generation int    `json:"generation"`
			State      string `json:"state"`
		} `json:"workers"`
	} `json:"status"`
}

func status(t *testing.T, cfg string) statusJSON {
	t.Helper()
	out, code := runCLI(t, "status", "-c", cfg, "-json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || !st.OK {
		t.Fatalf("status -json: exit %d, %v:\n%s", code, err, out)
	}
	return st
}

// hookFailsSite makes crashy's OnWorkerStart hook fail: the configuration
// is valid (forkd -t says so), but no worker of it can boot.
const hookFailsSite = `site "hook-fails" {
  hosts = ["never.invalid"]
  route "/" {
    respond {
      body = "never\n"
    }
  }
}`

// TestRefusedReloadIsWholeAndDeadWorkersAreReplaced: a reload whose
// workers cannot boot is refused whole (generation kept, READY=1 with the
// cause, status shows it, `forkd reload` fails with it), and the old
// workers, killed afterwards, are replaced from the kept configuration.
func TestRefusedReloadIsWholeAndDeadWorkersAreReplaced(t *testing.T) {
	n := newNotifyListener(t)
	s := start(t, opts{workers: 2, bin: filepath.Join(binDir, "crashy"), noSites: true,
		extra: `control_socket = "forkd.sock"`, env: []string{"NOTIFY_SOCKET=" + n.path}})
	expect := func(re string) {
		t.Helper()
		if m := n.next(t); !regexp.MustCompile(re).MatchString(m) {
			t.Fatalf("sd_notify message %q does not match %q", m, re)
		}
	}
	expect(`^READY=1\nSTATUS=generation 1: 2/2 workers ready$`)
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\n" + hookFailsSite + "\n")
	if out, code := runCLI(t, "-t", "-c", s.cfg); code != 0 {
		t.Fatalf("forkd -t on the config whose hook fails: exit %d\n%s", code, out)
	}
	load := startLoad(s.addr, 4)
	load.progress(t, 100)

	s.signal(syscall.SIGHUP)
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=reload failed: .*hook refuses site hook-fails`)
	s.waitLog(`reload refused.*hook refuses site hook-fails`, 15*time.Second)
	st := status(t, s.cfg)
	if st.Status.Generation != 1 || st.Status.LastReload == nil || st.Status.LastReload.OK ||
		!strings.Contains(st.Status.LastReload.Error, "hook refuses site hook-fails") {
		t.Fatalf("status after a refused reload: %+v", st.Status)
	}
	out, _ := runCLI(t, "status", "-c", s.cfg)
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, "hook refuses site hook-fails") {
		t.Fatalf("status text does not show the refused reload:\n%s", out)
	}
	// The control command waits for the outcome and reports the cause.
	out, code := runCLI(t, "reload", "-c", s.cfg)
	if code == 0 || !strings.Contains(out, "hook refuses site hook-fails") {
		t.Fatalf("forkd reload of a config whose workers cannot boot: exit %d\n%s", code, out)
	}
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=reload failed: `)
	// Logged once per refused reload (the output arrives through a pipe).
	refusals := func() int {
		return strings.Count(s.logs.String(), "reload refused; the old configuration keeps serving")
	}
	eventually(t, 10*time.Second, "two refusals logged", func() bool { return refusals() >= 2 })
	if c := refusals(); c != 2 {
		t.Fatalf("%d \"reload refused\" lines for two refused reloads", c)
	}

	// Kill every old worker: each is replaced from the kept configuration.
	old := s.workers()
	for _, pid := range old {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	eventually(t, 10*time.Second, "2 new workers of generation 1", func() bool {
		st := status(t, s.cfg)
		ready := 0
		for _, w := range st.Status.Workers {
			if w.Generation == 1 && w.State == "ready" && !containsInt(old, w.PID) {
				ready++
			}
		}
		return ready == 2
	})
	load.progress(t, 100)
	// Only the killed workers' in-flight requests may fail; a fresh request
	// must succeed.
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after the old workers were replaced: %d %v", code, err)
	}
	close(load.stop)
	load.wg.Wait()

	// Fixed, the reload goes through as generation 2.
	s.rewrite(string(good))
	if out, code := runCLI(t, "reload", "-c", s.cfg); code != 0 {
		t.Fatalf("reload of the fixed config: exit %d\n%s", code, out)
	}
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=generation 2: \d/2 workers ready$`)
	if st := status(t, s.cfg); st.Status.Generation != 2 || st.Status.LastReload == nil || !st.Status.LastReload.OK {
		t.Fatalf("status after a good reload: %+v", st.Status)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestRefusedReloadUnderLoadLosesNothing: while a refused reload's workers
// start and fail, the old generation serves every request.
func TestRefusedReloadUnderLoadLosesNothing(t *testing.T) {
	s := start(t, opts{workers: 2, bin: filepath.Join(binDir, "crashy"), noSites: true})
	good, _ := os.ReadFile(s.cfg)
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	for i := 0; i < 3; i++ {
		s.rewrite(string(good) + "\n" + hookFailsSite + "\n")
		s.signal(syscall.SIGHUP)
		s.waitLog(`reload refused`, 15*time.Second)
		load.progress(t, 100)
	}
	s.rewrite(string(good))
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	load.progress(t, 100)
	load.finish(t)
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

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestMasterMemoryFlat: reloads do not grow the master.
func TestMasterMemoryFlat(t *testing.T) {
	for _, tc := range []struct {
		workers, reloads, limitMiB int
	}{
		{8, 20, 25},
		{64, 20, 40},
	} {
		t.Run(fmt.Sprintf("%d-workers", tc.workers), func(t *testing.T) {
			s := start(t, opts{workers: tc.workers, extra: `log {
  level = "info"
}`})
			start := rssKiB(t, s.cmd.Process.Pid)
			for i := 2; i <= tc.reloads+1; i++ {
				s.signal(syscall.SIGHUP)
				s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, i), 60*time.Second)
			}
			eventually(t, 60*time.Second, "old workers to stop", func() bool { return len(s.workers()) == tc.workers })
			end := rssKiB(t, s.cmd.Process.Pid)
			t.Logf("master RSS: %d KiB at start, %d KiB after %d reloads of %d workers", start, end, tc.reloads, tc.workers)
			if end > tc.limitMiB<<10 {
				t.Fatalf("master RSS %d KiB after %d reloads of %d workers, over %d MiB", end, tc.reloads, tc.workers, tc.limitMiB)
			}
		})
	}
}

// TestUSR2WithMetricsAndControlSocket: the metrics listener and the control
// socket move to the new master with the HTTP listeners.
func TestUSR2WithMetricsAndControlSocket(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 2, extra: fmt.Sprintf("metrics {\n  address = %q\n}\ncontrol_socket = \"forkd.sock\"", maddr)})
	oldPid := s.cmd.Process.Pid
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	newPid := s.handedOver(20 * time.Second)
	load.progress(t, 200)
	load.finish(t)
	if st := status(t, s.cfg); st.Status.MasterPID != newPid || st.Status.MasterPID == oldPid {
		t.Fatalf("forkd status answers from master %d, want the new one %d", st.Status.MasterPID, newPid)
	}
	kids := children(newPid)
	eventually(t, 10*time.Second, "metrics from the new master", func() bool {
		_, body, err := get(maddr, "/metrics")
		return err == nil && strings.Contains(body, fmt.Sprintf(`pid="%d"`, kids[0]))
	})
}

// TestFailedUSR2KeepsControlSocket: a successor that fails (here it cannot
// bind its metrics port, taken by someone else after the hand-over offer)
// leaves the old master's control socket and pidfile in place.
func TestFailedUSR2KeepsControlSocket(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `control_socket = "forkd.sock"`})
	pidfile := filepath.Join(s.dir, "forkd.pid")
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nnonsense = true\n")
	s.signal(syscall.SIGUSR2)
	s.waitLog(`binary upgrade failed; the old master keeps serving`, 20*time.Second)
	s.rewrite(string(good))
	if st := status(t, s.cfg); st.Status.MasterPID != s.cmd.Process.Pid {
		t.Fatalf("status after a failed upgrade names master %d", st.Status.MasterPID)
	}
	if b, _ := os.ReadFile(pidfile); strings.TrimSpace(string(b)) != strconv.Itoa(s.cmd.Process.Pid) {
		t.Fatalf("pidfile after a failed upgrade: %q", b)
	}
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Ours again after the failed hand-over: removed at stop.
	if _, err := os.Stat(filepath.Join(s.dir, "forkd.sock")); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind after stop: %v", err)
	}
}

// TestMaxWorkerMemoryRecycles: a worker whose RSS stays above
// max_worker_memory is replaced gracefully, one at a time, losing nothing.
func TestMaxWorkerMemoryRecycles(t *testing.T) {
	s := start(t, opts{workers: 2, bin: filepath.Join(binDir, "crashy"), noSites: true,
		extra: "max_worker_memory = \"48MiB\"\nmax_worker_memory_window = \"2s\""})
	load := startLoad(s.addr, 4)
	load.progress(t, 100)
	_, body, err := get(s.addr, "/grow?mb=64")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscanf(body, "grown 64 MiB in %d", &pid)
	m := s.waitLog(`worker above max_worker_memory; recycling it gracefully.*worker_pid=(\d+).*rss_bytes=(\d+)`, 20*time.Second)
	if m[1] != strconv.Itoa(pid) {
		t.Fatalf("recycled worker %s, but %d grew", m[1], pid)
	}
	if rss, _ := strconv.Atoi(m[2]); rss < 48<<20 {
		t.Fatalf("logged RSS %d is under the limit", rss)
	}
	s.waitLog(fmt.Sprintf(`worker stopped.*worker_pid=%d.*cause=max_worker_memory`, pid), 20*time.Second)
	load.progress(t, 100)
	load.finish(t)
	if n := len(s.workers()); n != 2 {
		t.Fatalf("%d workers after recycling, want 2", n)
	}
}

// TestConfigOfAnySize: a 5 MB configuration reaches the workers at start
// and on reload.
func TestConfigOfAnySize(t *testing.T) {
	site := func(c byte) string {
		return fmt.Sprintf("site \"big\" {\n  hosts = [\"*\"]\n  route \"/\" {\n    respond {\n      body = %q\n    }\n  }\n}\n", strings.Repeat(string(c), 5<<20))
	}
	s := start(t, opts{workers: 2, sites: site('a')})
	code, body, err := get(s.addr, "/")
	if err != nil || code != 200 || len(body) != 5<<20 || body[0] != 'a' {
		t.Fatalf("GET: %d, %d bytes, %v", code, len(body), err)
	}
	cfg, _ := os.ReadFile(s.cfg)
	s.rewrite(strings.Replace(string(cfg), strings.Repeat("a", 5<<20), strings.Repeat("b", 5<<20), 1))
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 30*time.Second)
	eventually(t, 10*time.Second, "the new body", func() bool {
		code, body, err := get(s.addr, "/")
		return err == nil && code == 200 && len(body) == 5<<20 && body[0] == 'b'
	})
	if s.logs.has(`ipc failure|message too long`) {
		t.Fatal("ipc failure with a big configuration")
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

// TestLogFileGetsLastLineAndReopenFailureReachesStderr: the master's last
// line goes to log.file, and a USR1 that cannot reopen says so on stderr.
func TestLogFileGetsLastLineAndReopenFailureReachesStderr(t *testing.T) {
	logDir := t.TempDir()
	logFile := filepath.Join(logDir, "sub", "forkd.log")
	os.Mkdir(filepath.Dir(logFile), 0o755)
	s := start(t, opts{workers: 1, noWait: true, extra: fmt.Sprintf("log {\n  level = \"debug\"\n  file = %q\n}", logFile)})
	eventually(t, 15*time.Second, "workers ready in the log file", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "all workers ready")
	})
	// Rotate the directory away: reopening cannot create the file.
	if err := os.Rename(filepath.Dir(logFile), filepath.Join(logDir, "rotated")); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	s.waitLog(`reopening log file .* failed`, 10*time.Second)
	os.Mkdir(filepath.Dir(logFile), 0o755)
	s.signal(syscall.SIGUSR1)
	eventually(t, 10*time.Second, "log file recreated", func() bool {
		_, err := os.Stat(logFile)
		return err == nil
	})
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "master stopped") {
		t.Fatalf("the last line is not in the log file:\n%s", b)
	}
	if strings.Contains(s.logs.String(), "master stopped") {
		t.Fatal("the last line went to stderr")
	}
}

// TestFileLimitWarning: max_connections beyond RLIMIT_NOFILE is warned
// about at start, as nginx does, and the worker caps it: at the cap it
// stops accepting (the kernel queues new connections) instead of failing
// accept4 with EMFILE, and serves the queued ones as others close.
func TestFileLimitWarning(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "forkd-lowfd")
	script := "#!/bin/sh\nulimit -n 128 || exit 9\nexec " + binary + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := start(t, opts{workers: 1, bin: wrapper, extra: "limits {\n  max_connections = 5000\n}"})
	s.seen(`limits.max_connections exceeds the open file limit.*max_connections=5000 nofile_limit=128`, 10*time.Second)
	s.seen(`max_connections capped by the open file limit.*max_connections=5000 capped_to=64`, 10*time.Second)

	// 80 keep-alive clients: 64 are served at once, the others when
	// some of those close.
	type client struct {
		c    net.Conn
		done chan error
	}
	var cs []client
	for range 80 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(clientTimeout))
		cl := client{c, make(chan error, 1)}
		go func() {
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if err == nil {
				var resp *http.Response
				if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
				}
			}
			cl.done <- err
		}()
		cs = append(cs, cl)
	}
	served := 0
	for i, cl := range cs {
		if i == 64 {
			// The cap is reached: free room for the rest.
			for _, o := range cs[:20] {
				o.c.Close()
			}
		}
		if err := <-cl.done; err != nil {
			if i < 20 {
				continue // closed by the test above, maybe before its answer
			}
			t.Fatalf("client %d: %v", i+1, err)
		}
		served++
	}
	if served < 60 {
		t.Fatalf("only %d clients served", served)
	}
	if s.logs.has(`accept failed`) {
		t.Fatalf("the worker hit the descriptor limit:\n%s", s.logs)
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
