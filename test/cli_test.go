package test

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (pty(7)): the multiplexer side the
// test keeps, and the terminal a master gets as its controlling terminal.
// Both are closed when the test ends, after the master has stopped (a
// hang-up of its terminal would send it SIGHUP).
func openPTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt(3)
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN) // ptsname(3)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("cannot open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptm, tty
}

// resize changes the terminal's window size, as resizing a terminal window
// does: the kernel sends WINCH to the terminal's foreground process group.
func resize(t *testing.T, ptm *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

// TestWINCHFromATerminalIsIgnored: a master run in a terminal (the README's
// first command) keeps its workers when the window is resized, and says
// once that it ignored the WINCH.
func TestWINCHFromATerminalIsIgnored(t *testing.T) {
	ptm, tty := openPTY(t)
	s := start(t, opts{workers: 2, tty: tty})
	before := s.workers()
	resize(t, ptm, 40, 100)
	s.waitLog(`\[WARN\] +forkd: ignoring WINCH: the master has a controlling terminal`, 10*time.Second)
	resize(t, ptm, 50, 120)
	resize(t, ptm, 60, 140)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after a resize: %d %v", code, err)
	}
	st := status(t, s.cfg)
	if st.Status.State != "running" || len(st.Status.Workers) != 2 {
		t.Fatalf("status after a resize: %+v", st.Status)
	}
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// The output is copied from a pipe: wait for each line, which a
	// worker stopped by the WINCH would not have written.
	for _, pid := range before {
		s.seen(fmt.Sprintf(`worker stopped.*worker_pid=%d.*cause=shutdown`, pid), 10*time.Second)
	}
	if n := strings.Count(s.logs.String(), "ignoring WINCH"); n != 1 {
		t.Errorf("the ignored WINCH was logged %d times, want once", n)
	}
}

// TestWINCHWithoutATerminal: without a terminal (as under systemd) WINCH
// stops every worker, and status says so instead of "running".
func TestWINCHWithoutATerminal(t *testing.T) {
	s := start(t, opts{workers: 2})
	s.signal(syscall.SIGWINCH)
	eventually(t, 10*time.Second, "no workers", func() bool { return len(s.workers()) == 0 })
	if st := status(t, s.cfg); st.Status.State != "idle" || len(st.Status.Workers) != 0 {
		t.Fatalf("status after WINCH: %+v", st.Status)
	}
	out, code := runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !regexp.MustCompile(`state: +idle \(WINCH stopped every worker`).MatchString(out) {
		t.Fatalf("status after WINCH: exit %d\n%s", code, out)
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 10*time.Second)
	if st := status(t, s.cfg); st.Status.State != "running" {
		t.Fatalf("status after HUP: %+v", st.Status)
	}
}

// slowBootSite makes crashy's worker start take 6 s (crashy's slowBoot).
const slowBootSite = `site "slow-boot" {
  hosts = ["never.invalid"]
  route "/" {
    respond {
      body = "never\n"
    }
  }
}`

// TestReloadWaitsForSlowWorkers: `forkd reload` answers when the reload is
// done, even when the new workers take longer to start than the 5 s it
// used to wait: worker_timeout bounds a reload, and so the command.
func TestReloadWaitsForSlowWorkers(t *testing.T) {
	s := start(t, opts{workers: 1, bin: filepath.Join(binDir, "crashy"), noSites: true})
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\n" + slowBootSite + "\n")
	began := time.Now()
	out, code := runCLI(t, "reload", "-c", s.cfg)
	took := time.Since(began)
	if code != 0 || strings.TrimSpace(out) != "reload applied" {
		t.Fatalf("reload of slow workers: exit %d after %v\n%s", code, took, out)
	}
	if took < 5*time.Second {
		t.Fatalf("the reload took %v; the test wants a worker start over 5 s", took)
	}
	if st := status(t, s.cfg); st.Status.Generation != 2 || st.Status.LastReload == nil || !st.Status.LastReload.OK {
		t.Fatalf("status after the reload: %+v", st.Status)
	}
	// A refused reload says so, with the cause.
	s.rewrite(string(good) + "\n" + hookFailsSite + "\n")
	out, code = runCLI(t, "reload", "-c", s.cfg)
	if code != 1 || !regexp.MustCompile(`forkd reload: refused: .*hook refuses site hook-fails`).MatchString(out) {
		t.Fatalf("refused reload: exit %d\n%s", code, out)
	}
}

// TestControlWithABrokenConfig: while config.hcl is invalid, or does not
// even parse, `forkd status` still reaches the master, says which socket
// it used, and shows the failed reload; stop waits for the master to exit.
func TestControlWithABrokenConfig(t *testing.T) {
	s := start(t, opts{workers: 1})
	good, _ := os.ReadFile(s.cfg)
	sock := filepath.Join(s.dir, "forkd.sock")

	// A value the loader refuses: the master refuses the reload.
	s.rewrite(string(good) + "\ndrain_delay = \"never\"\n")
	s.signal(syscall.SIGHUP)
	s.waitLog(`reload refused`, 10*time.Second)
	out, code := runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !regexp.MustCompile(`last reload: +FAILED .*config\.hcl:\d+`).MatchString(out) ||
		!strings.Contains(out, "the configuration is invalid; using its control socket "+sock) {
		t.Fatalf("status with an invalid config: exit %d\n%s", code, out)
	}

	// Broken syntax after the pidfile: the part that parses names it.
	s.rewrite(string(good) + "\nsite \"x\" {\n")
	out, code = runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, "last reload:") || !strings.Contains(out, "does not parse; using its control socket "+sock) {
		t.Fatalf("status with a config that does not parse: exit %d\n%s", code, out)
	}

	// Broken before the pidfile: nothing names the socket; -s does.
	s.rewrite("site {\n" + string(good))
	out, code = runCLI(t, "status", "-c", s.cfg)
	if code != 1 || !strings.Contains(out, "-s SOCKET") {
		t.Fatalf("status with no socket to be found: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "status", "-c", s.cfg, "-s", sock)
	if code != 0 || !strings.Contains(out, "last reload:") {
		t.Fatalf("status -s: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "stop", "-s", sock)
	if code != 0 || !strings.Contains(out, "master stopped") {
		t.Fatalf("stop -s: exit %d\n%s", code, out)
	}
	if code := s.waitExit(5 * time.Second); code != 0 {
		t.Fatalf("master exit %d", code)
	}
}

// TestCheckMissingDirectories: forkd -t names, at its line, a pidfile or
// unix socket whose directory does not exist, and the master refuses to
// start with the same file:line instead of failing later without one.
func TestCheckMissingDirectories(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.hcl")
	src := fmt.Sprintf("workers = 1\npidfile = %q\nlisten {\n  address = %q\n}\n",
		filepath.Join(dir, "run/forkd.pid"), "unix:"+filepath.Join(dir, "sockets/http.sock"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, "-t", "-c", cfg)
	if code != 0 || !strings.Contains(out, "warning: "+cfg+":2:11: Invalid pidfile; The directory \""+filepath.Join(dir, "run")+"\" does not exist") ||
		!strings.Contains(out, cfg+":4:13: Invalid listen address; The directory \""+filepath.Join(dir, "sockets")+"\" does not exist") {
		t.Fatalf("forkd -t: exit %d\n%s", code, out)
	}
	c := exec.Command(binary, "-c", cfg)
	c.Dir = dir
	b, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(b), cfg+":2:11: Invalid pidfile") {
		t.Fatalf("start: %v\n%s", err, b)
	}
}

// TestUSR2GoesOnFromTheOldGeneration: the master a binary upgrade starts
// numbers its generation after the old master's, not 1 again.
func TestUSR2GoesOnFromTheOldGeneration(t *testing.T) {
	s := start(t, opts{workers: 1})
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	s.signal(syscall.SIGUSR2)
	s.handedOver(30 * time.Second)
	if st := status(t, s.cfg); st.Status.Generation != 3 || len(st.Status.Workers) != 1 || st.Status.Workers[0].Generation != 3 {
		t.Fatalf("the new master's status: %+v", st.Status)
	}
}

// TestHelpAndVersionCommands: help and version are commands, and help
// says what each command does.
func TestHelpAndVersionCommands(t *testing.T) {
	out, code := runCLI(t, "help")
	if code != 0 || !regexp.MustCompile(`(?m)^  reload +\S`).MatchString(out) {
		t.Errorf("forkd help: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "\tgo\tgo1.") || !strings.Contains(out, "\tmod\tgithub.com/forkd/forkd\t") {
		t.Errorf("forkd version: exit %d\n%s", code, out)
	}
}

// TestScaleOutOfRangeNamedOnce: "forkd scale: ...", not "scale: scale:".
func TestScaleOutOfRangeNamedOnce(t *testing.T) {
	s := start(t, opts{workers: 1})
	out, code := runCLI(t, "scale", "5000", "-c", s.cfg)
	if code != 2 || strings.Count(out, "scale:") != 1 {
		t.Errorf("forkd scale 5000: exit %d\n%s", code, out)
	}
}

// TestTTOUAtOneWorkerSaysRefused: TTOU at one worker says it refused.
func TestTTOUAtOneWorkerSaysRefused(t *testing.T) {
	s := start(t, opts{workers: 1})
	s.signal(syscall.SIGTTOU)
	s.waitLog(`not scaling down: at least one worker must run.*workers=1`, 10*time.Second)
}

// TestMaxRequestsLogsTheCount: a worker recycled by max_requests is logged
// with the requests it served, not the count of its last heartbeat.
func TestMaxRequestsLogsTheCount(t *testing.T) {
	s := start(t, opts{workers: 1, extra: "max_requests = 3"})
	for i := 0; i < 3; i++ {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("GET %d: %d %v", i, code, err)
		}
	}
	s.waitLog(`worker reached max_requests.*requests=3`, 10*time.Second)
}

// TestHelloLogsSlotOnce: the hello example names slot and generation once:
// its worker logger already has them.
func TestHelloLogsSlotOnce(t *testing.T) {
	h := start(t, opts{workers: 1, bin: filepath.Join(binDir, "hello"), noSites: true})
	line := h.seen(`hello worker starting.*`, 10*time.Second)[0]
	if strings.Count(line, "slot=") != 1 || strings.Count(line, "generation=") != 1 {
		t.Errorf("hello logs slot or generation twice: %s", line)
	}
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
