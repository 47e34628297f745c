// Package test holds forkd's integration tests: they build the real binary,
// start a master on a free loopback port, and drive it with real signals,
// sockets and clients.
package test

import (
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the forkd daemon built once for the whole package; binDir
// holds it and the examples.
var binary, binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "forkd-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	binary = filepath.Join(dir, "forkd")
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/forkd/forkd/cmd/forkd",
		"github.com/forkd/forkd/examples/hello", "github.com/forkd/forkd/examples/nethttp", "github.com/forkd/forkd/examples/shared",
		"github.com/forkd/forkd/test/testdata/crashy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building forkd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a closed port out again at once: a test
		// that asks twice (a TLS and a plain listener, say) would get
		// the same one and its config "Duplicate listen address". No
		// port is given twice in one run of the tests.
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
	t.Fatal("freePort: no port not already handed out in 100 tries")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// server is one running forkd master under test.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	dir  string
	cfg  string
	addr string // host:port of the first listener
	logs *logWatcher

	exited  chan struct{}
	exitErr error
}

type opts struct {
	workers int
	extra   string // more top-level HCL
	sites   string // site blocks; default a respond route on "/"
	args    []string
	env     []string
	noWait  bool   // don't wait for readiness
	bin     string // binary to run; default the forkd daemon
	noSites bool   // write no site block (an embedding app serves everything)
	listen  string // more keys of the listen block
	// tty, when set, is the master's controlling terminal (and stdin).
	// Without it the master runs in a session of its own, with no
	// terminal, whatever terminal the tests were started from.
	tty *os.File
}

// start writes a config.hcl into a temp dir and starts a master on it.
func start(t testing.TB, o opts) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, exited: make(chan struct{})}
	s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if o.workers == 0 {
		o.workers = 2
	}
	if o.noSites {
		o.sites = " "
	}
	if o.sites == "" {
		o.sites = `site "test" {
  hosts = ["*"]
  route "/" {
    respond {
      status = 200
      body = "hello\n"
    }
  }
}`
	}
	// Base settings, unless the test's extra HCL sets them itself.
	base := ""
	if !strings.Contains(o.extra, "graceful_timeout") {
		base += "graceful_timeout = \"10s\"\n"
	}
	if !strings.Contains(o.extra, "worker_timeout") {
		base += "worker_timeout = \"30s\"\n"
	}
	if !strings.Contains(o.extra, "log {") {
		base += "log {\n  level = \"debug\"\n}\n"
	}
	cfg := fmt.Sprintf(`workers = %d
pidfile = "%s/forkd.pid"
listen {
  address = "%s"
%s}
%s
%s
%s
`, o.workers, dir, s.addr, o.listen, base, o.extra, o.sites)
	s.cfg = filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-c", s.cfg}, o.args...)
	bin := binary
	if o.bin != "" {
		bin = o.bin
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), o.env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if o.tty != nil {
		s.cmd.Stdin = o.tty
		s.cmd.SysProcAttr.Setctty = true
		s.cmd.SysProcAttr.Ctty = 0 // stdin, in the child
	}
	s.logs = newLogWatcher()
	s.run()
	if !o.noWait {
		s.waitLog(`all workers ready.*generation=1`, 15*time.Second)
	}
	return s
}

func execIn(dir, bin string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Dir = dir
	return c
}

// run starts s.cmd with its output going to s.logs and arranges cleanup.
func (s *server) run() {
	t := s.t
	// Our own pipe, not exec's copying goroutine: Wait must return when the
	// master exits even if a successor master (USR2) still holds the pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = pw
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		io.Copy(s.logs, pr)
		pr.Close()
	}()
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
			}
		}
		if t.Failed() {
			t.Logf("forkd output:\n%s", s.logs.String())
		}
	})
}

// rewrite replaces the config file (for reload tests) keeping its listen.
func (s *server) rewrite(content string) {
	s.t.Helper()
	if err := os.WriteFile(s.cfg, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits for the master to exit and returns its exit code.
func (s *server) waitExit(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(d):
		s.t.Fatalf("master did not exit within %v", d)
	}
	if s.exitErr == nil {
		return 0
	}
	if ee, ok := s.exitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	s.t.Fatalf("wait: %v", s.exitErr)
	return -1
}

// waitLog waits for a log line matching pattern (after the lines already
// consumed by earlier waits) and returns its submatches.
func (s *server) waitLog(pattern string, d time.Duration) []string {
	s.t.Helper()
	m, err := s.logs.wait(regexp.MustCompile(pattern), d)
	if err != nil {
		s.t.Fatalf("waiting for log %q: %v", pattern, err)
	}
	return m
}

// workers returns the pids of the master's live children.
func (s *server) workers() []int {
	return children(s.cmd.Process.Pid)
}

// children returns the pids of ppid's live (not zombie) children.
func children(ppid int) []int { return childrenIn(ppid, false) }

// zombies returns the pids of ppid's children that have exited and were
// not waited for.
func zombies(ppid int) []int { return childrenIn(ppid, true) }

func childrenIn(ppid int, zombie bool) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && parent == ppid && (state == "Z") == zombie {
			out = append(out, pid)
		}
	}
	return out
}

// procStat reads a process's state and parent from /proc/pid/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// handedOver waits, after a USR2, for the new master to be ready and for
// this one to exit 0, and returns the new master's pid; the new master is
// stopped when the test ends.
func (s *server) handedOver(d time.Duration) int {
	s.t.Helper()
	m := s.waitLog(`binary upgrade: new master is ready.*new_master_pid=(\d+)`, d)
	pid, _ := strconv.Atoi(m[1])
	stopAtEnd(s.t, pid)
	if code := s.waitExit(d); code != 0 {
		s.t.Fatalf("old master exit %d", code)
	}
	return pid
}

// stopAtEnd quits, when the test ends, a master the harness did not start
// (the successor of a USR2).
func stopAtEnd(t testing.TB, pid int) {
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGQUIT)
		eventually(t, 10*time.Second, "new master to exit", func() bool { return !alive(pid) })
	})
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clientTimeout bounds one request of a test client. It only guards
// against a hang: a loaded CI machine (both cores busy) can take seconds to
// answer, which is slow, not wrong.
const clientTimeout = 30 * time.Second

// get does one request with a fresh connection and returns status and body.
func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// logWatcher collects process output and lets tests wait for lines.
type logWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	part  []byte
	next  int // first line not yet consumed by wait
	cond  chan struct{}
}

func newLogWatcher() *logWatcher { return &logWatcher{cond: make(chan struct{})} }

func (l *logWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.part = append(l.part, p...)
	consumed := 0
	for {
		i := bytes.IndexByte(l.part[consumed:], '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.part[consumed:consumed+i]))
		consumed += i + 1
	}
	l.part = append(l.part[:0], l.part[consumed:]...)
	close(l.cond)
	l.cond = make(chan struct{})
	return len(p), nil
}

func (l *logWatcher) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logWatcher) wait(re *regexp.Regexp, d time.Duration) ([]string, error) {
	deadline := time.After(d)
	for {
		l.mu.Lock()
		for i := l.next; i < len(l.lines); i++ {
			if m := re.FindStringSubmatch(l.lines[i]); m != nil {
				l.next = i + 1
				l.mu.Unlock()
				return m, nil
			}
		}
		ch := l.cond
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return nil, fmt.Errorf("not seen within %v", d)
		}
	}
}

// seen waits for a line matching pattern anywhere in the output, also
// before the lines earlier waits consumed; it does not move the cursor.
func (s *server) seen(pattern string, d time.Duration) []string {
	s.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(d)
	for {
		l := s.logs
		l.mu.Lock()
		for _, line := range l.lines {
			if m := re.FindStringSubmatch(line); m != nil {
				l.mu.Unlock()
				return m
			}
		}
		ch := l.cond
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			s.t.Fatalf("waiting for log %q: not seen within %v", pattern, d)
			return nil
		}
	}
}

// has reports whether any line so far matches pattern.
func (l *logWatcher) has(pattern string) bool {
	re := regexp.MustCompile(pattern)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}
