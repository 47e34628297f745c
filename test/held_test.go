package test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// What held under the second round of fault injection, kept as tests.

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

// TestControlSocketIdleClients: 500 idle connections on the control socket
// do not keep `forkd status` from answering.
func TestControlSocketIdleClients(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `control_socket = "forkd.sock"`})
	sock := filepath.Join(s.dir, "forkd.sock")
	for i := 0; i < 500; i++ {
		var c net.Conn
		// A full accept queue refuses with EAGAIN: wait for the master to
		// take the earlier ones.
		eventually(t, 10*time.Second, "idle client connected", func() bool {
			var err error
			c, err = net.Dial("unix", sock)
			return err == nil
		})
		defer c.Close()
	}
	st := status(t, s.cfg)
	if st.Status.MasterPID != s.cmd.Process.Pid {
		t.Fatalf("status: %+v", st.Status)
	}
}

// TestUSR2ThenHUP: a HUP while a successor boots reloads the old master;
// the successor still takes over, and nothing is lost.
func TestUSR2ThenHUP(t *testing.T) {
	s := start(t, opts{workers: 2})
	var newPid int
	t.Cleanup(func() {
		if newPid > 0 {
			syscall.Kill(newPid, syscall.SIGQUIT)
			eventually(t, 10*time.Second, "new master to exit", func() bool { return !alive(newPid) })
		}
	})
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	s.signal(syscall.SIGHUP)
	m := s.waitLog(`binary upgrade: new master is ready.*new_master_pid=(\d+)`, 30*time.Second)
	newPid, _ = strconv.Atoi(m[1])
	if code := s.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("old master exit %d", code)
	}
	load.progress(t, 200)
	load.finish(t)
	if !alive(newPid) {
		t.Fatal("new master not running")
	}
}
