package test

import (
	"context"
	"debug/buildinfo"
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

	"github.com/forkd/forkd"
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

func TestConfigCheckFlag(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(good, []byte("workers = 2\n"), 0o644)
	os.WriteFile(bad, []byte("workers = 2\nlimits {\n  idle_timeout = \"soon\"\n}\n"), 0o644)
	if out, code := runCLI(t, "-t", "-c", good); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("-t on a good file: exit %d\n%s", code, out)
	}
	out, code := runCLI(t, "-t", "-c", bad)
	if code != 1 || !regexp.MustCompile(`bad\.hcl:3`).MatchString(out) {
		t.Fatalf("-t on a bad file: exit %d, want 1 and bad.hcl:3\n%s", code, out)
	}
	if _, code := runCLI(t, "-t", "-c", filepath.Join(dir, "missing.hcl")); code != 1 {
		t.Fatalf("-t on a missing file: exit %d", code)
	}
}

// TestVersion: -version prints forkd's version once, then the Go version,
// module and VCS settings the binary was built with, as "go version -m"
// reads them from the binary.
func TestVersion(t *testing.T) {
	out, code := runCLI(t, "-version")
	if code != 0 || !strings.HasPrefix(out, "forkd "+forkd.Version+"\n") || strings.Count(out, forkd.Version) != 1 {
		t.Fatalf("-version: exit %d\n%s", code, out)
	}
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"\tgo\t" + bi.GoVersion + "\n", "\tpath\tgithub.com/forkd/forkd/cmd/forkd\n"}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs") {
			want = append(want, "\tbuild\t"+s.Key+"="+s.Value+"\n")
		}
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("-version lacks %q:\n%s", w, out)
		}
	}
	// An embedding program names itself and the forkd it embeds.
	hb, err := exec.Command(filepath.Join(binDir, "hello"), "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(hb), "hello (forkd "+forkd.Version+")\n") {
		t.Fatalf("hello -version: %v\n%s", err, hb)
	}
}

// TestNoConfigDefaults runs forkd with no configuration at all: it must
// serve the welcome page and /healthz. The built-in listener is
// 127.0.0.1:8080 (forkd's unit tests check that); here a test hook moves
// it to a free port, so the test does not depend on 8080 being free.
func TestNoConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	s := startNoConfig(t, dir, binary)
	out, code := runCLIIn(t, dir, "-t")
	if code != 0 || !strings.Contains(out, "built-in defaults is valid") {
		t.Fatalf("-t with no configuration: exit %d\n%s", code, out)
	}
	s.waitLog(`all workers ready`, 15*time.Second)
	code, body, err := get(s.addr, "/healthz")
	if err != nil || code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q %v", code, body, err)
	}
	code, body, err = get(s.addr, "/")
	if err != nil || code != 200 || !strings.Contains(body, "forkd") {
		t.Fatalf("GET / = %d %q %v", code, body, err)
	}
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// startNoConfig starts bin in dir with no -c flag, its built-in listener
// moved to a free port.
func startNoConfig(t *testing.T, dir, bin string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, exited: make(chan struct{}), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), logs: newLogWatcher()}
	s.cmd = execIn(dir, bin)
	s.cmd.Env = append(os.Environ(), "FORKD_TEST_DEFAULT_ADDRESS="+s.addr)
	s.run()
	return s
}

func runCLIIn(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	out, err := execIn(dir, binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestExampleIgnoresWorkingDirConfig runs examples/hello as the README
// does, from a directory whose config.hcl would shadow its handler with a
// static site: an embedding program reads a file only when given -c, while
// the daemon picks up ./config.hcl.
func TestExampleIgnoresWorkingDirConfig(t *testing.T) {
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("sample site\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := fmt.Sprintf("workers = 1\nlisten {\n  address = \"127.0.0.1:%d\"\n}\nsite \"s\" {\n  route \"/\" {\n    static { root = \"./www\" }\n  }\n}\n", port)
	if err := os.WriteFile(filepath.Join(dir, "config.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startNoConfig(t, dir, filepath.Join(binDir, "hello"))
	s.waitLog(`all workers ready`, 15*time.Second)
	for path, want := range map[string]string{"/": `^Hello, World!\n$`, "/worker": `^slot \d+ generation 1\n$`} {
		if code, body, err := get(s.addr, path); err != nil || code != 200 || !regexp.MustCompile(want).MatchString(body) {
			t.Fatalf("hello: GET %s = %d %q %v, want %s", path, code, body, err, want)
		}
	}
	// The daemon, started the same way, serves ./config.hcl.
	d := startNoConfig(t, dir, binary)
	d.addr = fmt.Sprintf("127.0.0.1:%d", port)
	d.waitLog(`all workers ready`, 15*time.Second)
	if code, body, err := get(d.addr, "/"); err != nil || code != 200 || body != "sample site\n" {
		t.Fatalf("forkd: GET / = %d %q %v", code, body, err)
	}
}

// TestListenIPv6AndUnix binds an IPv6 loopback address and a unix socket
// whose path holds a stale socket file.
func TestListenIPv6AndUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "fk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "forkd.sock")
	// A stale socket file: bound, then the listener is gone.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	extra := fmt.Sprintf("listen {\n  address = \"unix:%s\"\n  mode = \"0660\"\n}\n", sock)
	v6 := ""
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6 = ln.Addr().String()
		ln.Close()
		extra += fmt.Sprintf("listen {\n  address = \"%s\"\n}\n", v6)
	}
	s := start(t, opts{workers: 2, extra: extra})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	c := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://unix/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello\n" {
		t.Fatalf("over unix socket: %d %q", resp.StatusCode, b)
	}
	if v6 != "" {
		if code, body, err := get(v6, "/"); err != nil || code != 200 || body != "hello\n" {
			t.Fatalf("over IPv6: %d %q %v", code, body, err)
		}
	} else {
		t.Log("no IPv6 loopback here; IPv6 part skipped")
	}
	s.signal(syscall.SIGTERM)
	s.waitExit(15 * time.Second)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind after exit: %v", err)
	}
}

func TestSystemdWatchdogAndMainPID(t *testing.T) {
	n := newNotifyListener(t)
	s := start(t, opts{workers: 1, env: []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=200000"}})
	seen := func(re string) string {
		t.Helper()
		r := regexp.MustCompile(re)
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-n.msgs:
				if r.MatchString(m) {
					return m
				}
			case <-deadline:
				t.Fatalf("no sd_notify message matching %q", re)
			}
		}
	}
	seen(`^WATCHDOG=1$`)
	seen(`^WATCHDOG=1$`)
	s.signal(syscall.SIGUSR2)
	m := seen(`^MAINPID=\d+`)
	newPid, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(m, "\n", 2)[0], "MAINPID="))
	stopAtEnd(t, newPid)
	if newPid == s.cmd.Process.Pid || newPid == 0 {
		t.Fatalf("MAINPID=%d, old master %d", newPid, s.cmd.Process.Pid)
	}
	if code := s.waitExit(20 * time.Second); code != 0 {
		t.Fatalf("old master exit %d", code)
	}
}
