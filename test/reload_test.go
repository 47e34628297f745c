// Reload (HUP): what a reload applies, refuses, and survives.

package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// TestHUPBurstUnderLoad: HUPs sent back to back supersede one another; the
// last one wins and no request is lost.
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
	eventually(t, 20*time.Second, "2 workers", func() bool { return len(s.workers()) == 2 })
	if st := status(t, s.cfg); st.Status.Generation != 2 || st.Status.Reloading {
		t.Fatalf("status after a burst of HUPs: %+v", st.Status)
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
