// Reload (HUP): what a reload applies, refuses, and survives.

package test

import (
	"fmt"
	"net"
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

// TestHUPDuringShutdownIsIgnored: once TERM closed the listeners, a HUP (or
// TTIN, USR2, `forkd reload|scale`) must not open them again.
func TestHUPDuringShutdownIsIgnored(t *testing.T) {
	up := newHeldUpstream(t)
	s := start(t, opts{workers: 1, extra: `control_socket = "forkd.sock"`, sites: fmt.Sprintf(`site "test" {
  hosts = ["*"]
  route "/slow" {
    proxy {
      upstreams = ["%s"]
    }
  }
  route "/" {
    respond {
      body = "hello\n"
    }
  }
}`, up.addr)})
	// A request in flight keeps the graceful stop going.
	done := make(chan error, 1)
	go func() {
		code, _, err := get(s.addr, "/slow")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		done <- err
	}()
	<-up.started
	s.signal(syscall.SIGTERM)
	s.waitLog(`signal received.*signal=terminated`, 10*time.Second)
	s.signal(syscall.SIGHUP)
	s.waitLog(`ignoring signal: the master is stopping.*signal=hangup`, 10*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitLog(`ignoring signal: the master is stopping`, 10*time.Second)
	out, code := runCLI(t, "reload", "-c", s.cfg)
	if code == 0 || !strings.Contains(out, "the master is stopping") {
		t.Fatalf("forkd reload while stopping: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "scale", "3", "-c", s.cfg)
	if code == 0 || !strings.Contains(out, "the master is stopping") {
		t.Fatalf("forkd scale while stopping: exit %d\n%s", code, out)
	}
	// New clients are refused at once, not left hanging.
	c, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("the listener accepts connections during the graceful stop")
	}
	up.answer()
	if err := <-done; err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if s.logs.has(`reloading: starting a new generation`) {
		t.Fatal("a HUP during shutdown started a generation")
	}
}

// TestReloadMovesPidfileAndControlSocket: changing pidfile or
// control_socket on HUP writes the new and removes the old; a control
// socket file removed while running is made again by a HUP.
func TestReloadMovesPidfileAndControlSocket(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `control_socket = "a.sock"`})
	cfg, _ := os.ReadFile(s.cfg)
	pid := strconv.Itoa(s.cmd.Process.Pid)
	newCfg := strings.Replace(string(cfg), `control_socket = "a.sock"`, `control_socket = "b.sock"`, 1)
	newCfg = strings.Replace(newCfg, "/forkd.pid", "/other.pid", 1)
	s.rewrite(newCfg)
	// (`forkd reload` would look for the new socket: signal the master.)
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	if b, err := os.ReadFile(filepath.Join(s.dir, "other.pid")); err != nil || strings.TrimSpace(string(b)) != pid {
		t.Fatalf("new pidfile: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "forkd.pid")); !os.IsNotExist(err) {
		t.Fatalf("old pidfile left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "a.sock")); !os.IsNotExist(err) {
		t.Fatalf("old control socket left: %v", err)
	}
	if st := status(t, s.cfg); st.Status.MasterPID != s.cmd.Process.Pid {
		t.Fatalf("status over the new control socket: %+v", st)
	}
	// Removed by a careless clean-up: HUP makes it again.
	if err := os.Remove(filepath.Join(s.dir, "b.sock")); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`control socket file is gone; making it again`, 10*time.Second)
	s.waitLog(`all workers ready.*generation=3`, 15*time.Second)
	if st := status(t, s.cfg); st.Status.Generation != 3 {
		t.Fatalf("status over the re-made control socket: %+v", st)
	}
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"other.pid", "b.sock"} {
		if _, err := os.Stat(filepath.Join(s.dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s left after stop: %v", f, err)
		}
	}
}

// TestReloadRemakesRemovedUnixListener: a unix listener whose socket file
// was removed is bound again by a HUP.
func TestReloadRemakesRemovedUnixListener(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "web.sock")
	s := start(t, opts{workers: 1, extra: fmt.Sprintf("listen {\n  address = \"unix:%s\"\n}", sock)})
	get := func() error {
		c, err := net.DialTimeout("unix", sock, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b := make([]byte, 64)
		n, _ := c.Read(b)
		if !strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
			return fmt.Errorf("answer %q", b[:n])
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	os.Remove(sock)
	s.signal(syscall.SIGHUP)
	s.waitLog(`unix socket file was removed; listening on a new one`, 10*time.Second)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	eventually(t, 10*time.Second, "the re-made unix socket to answer", func() bool { return get() == nil })
}

// TestReloadWithUnopenableLogRefusedBeforeWorkers: a new log file the
// master cannot open refuses the reload before any worker starts.
func TestReloadWithUnopenableLogRefusedBeforeWorkers(t *testing.T) {
	n := newNotifyListener(t)
	s := start(t, opts{workers: 2, env: []string{"NOTIFY_SOCKET=" + n.path}})
	n.next(t) // READY=1
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(strings.Replace(string(good), "log {\n  level = \"debug\"\n}", "log {\n  level = \"debug\"\n  file = \"missing-dir/forkd.log\"\n}", 1))
	s.signal(syscall.SIGHUP)
	if m := n.next(t); !strings.HasPrefix(m, "RELOADING=1") {
		t.Fatalf("sd_notify %q", m)
	}
	if m := n.next(t); !strings.HasPrefix(m, "READY=1\nSTATUS=reload failed: ") || !strings.Contains(m, "missing-dir") {
		t.Fatalf("sd_notify %q", m)
	}
	s.waitLog(`reload refused`, 10*time.Second)
	if s.logs.has(`worker started.*worker_generation=2`) {
		t.Fatal("a worker started for a reload the master could not open the log of")
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after the refused reload: %d %v", code, err)
	}
}

// TestHUPBurstUnderLoad: HUPs sent back to back coalesce (the kernel keeps
// one pending) or supersede one another; the last one wins and no request
// is lost. A HUP that reaches the master only after the reload it asked
// for is done (the test was descheduled between two kills, on a busy
// machine) starts one more: the master then settles on that generation.
func TestHUPBurstUnderLoad(t *testing.T) {
	s := start(t, opts{workers: 2})
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	for i := 0; i < 10; i++ {
		s.signal(syscall.SIGHUP)
	}
	s.waitLog(`all workers ready.*generation=2`, 30*time.Second)
	load.progress(t, 200)
	load.finish(t)
	var st statusJSON
	eventually(t, 20*time.Second, "the master to settle with 2 workers of its generation", func() bool {
		st = status(t, s.cfg)
		if st.Status.Reloading || len(st.Status.Workers) != 2 || len(s.workers()) != 2 {
			return false
		}
		for _, w := range st.Status.Workers {
			if w.Generation != st.Status.Generation || w.State != "ready" {
				return false
			}
		}
		return true
	})
	if g := st.Status.Generation; g < 2 || g > 11 {
		t.Fatalf("generation %d after a burst of 10 HUPs: %+v", g, st.Status)
	}
}

// TestHUPThenTERM: a TERM right after a HUP stops everything, the reload's
// workers included, and the master exits 0.
func TestHUPThenTERM(t *testing.T) {
	s := start(t, opts{workers: 2})
	master := s.cmd.Process.Pid
	s.signal(syscall.SIGHUP)
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if kids := children(master); len(kids) != 0 {
		t.Fatalf("workers left behind: %v", kids)
	}
}

// TestBrokenConfigFileKindsAreRefused: a config replaced by a directory,
// deleted or unreadable is refused; serving continues.
func TestBrokenConfigFileKindsAreRefused(t *testing.T) {
	s := start(t, opts{workers: 1})
	good, _ := os.ReadFile(s.cfg)
	for _, tc := range []struct {
		name   string
		break_ func()
	}{
		{"deleted", func() { os.Remove(s.cfg) }},
		{"directory", func() { os.Remove(s.cfg); os.Mkdir(s.cfg, 0o755) }},
		{"empty", func() { os.WriteFile(s.cfg, nil, 0o644) }},
		{"unreadable", func() {
			os.WriteFile(s.cfg, good, 0o644)
			// Root reads anything: a FIFO nobody writes to would block, so
			// use a file whose read fails instead — a dangling symlink.
			os.Remove(s.cfg)
			os.Symlink(filepath.Join(s.dir, "missing-target"), s.cfg)
		}},
	} {
		tc.break_()
		s.signal(syscall.SIGHUP)
		s.waitLog(`reload refused`, 10*time.Second)
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("%s: GET after a refused reload: %d %v", tc.name, code, err)
		}
		os.RemoveAll(s.cfg)
	}
	os.WriteFile(s.cfg, good, 0o644)
	if st := status(t, s.cfg); st.Status.Generation != 1 {
		t.Fatalf("generation %d after refused reloads", st.Status.Generation)
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

// TestHUPUnderWrk reloads repeatedly while wrk drives load, over keep-alive
// connections and with a new connection per request; wrk must report no
// socket errors and no non-2xx responses. wrk runs with a duration far
// longer than the test needs and is stopped with SIGINT once the 20 reloads
// are done (wrk prints its summary on SIGINT), so a slow machine makes the
// test slower, never red.
func TestHUPUnderWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk not installed (Debian package wrk; .ci/run installs it)")
	}
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"keep-alive", nil},
		{"connection-close", []string{"-H", "Connection: close"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := start(t, opts{workers: 2})
			// A generous timeout: on a loaded CI machine wrk's 2 s default can
			// count a slow answer as an error; a lost request still shows.
			args := append([]string{"-t2", "-c64", "-d1h", "--timeout", "10s"}, mode.args...)
			w := startWrk(t, wrk, append(args, "http://"+s.addr+"/")...)
			// Reload only once the load is reaching the workers.
			eventually(t, 15*time.Second, "wrk's requests to reach the workers", func() bool {
				return servedRequests(t, s) > 0
			})
			for gen := 2; gen <= 21; gen++ {
				if w.exited() {
					t.Fatalf("wrk ended before the reloads were done:\n%s", w.out)
				}
				s.signal(syscall.SIGHUP)
				s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, gen), 15*time.Second)
			}
			out := w.stop(15 * time.Second)
			t.Logf("wrk:\n%s", out)
			if strings.Contains(out, "Socket errors") || strings.Contains(out, "Non-2xx") {
				t.Fatalf("wrk saw failures across reloads:\n%s", out)
			}
			m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out)
			if m == nil || m[1] == "0" {
				t.Fatalf("unexpected wrk output:\n%s", out)
			}
		})
	}
}
