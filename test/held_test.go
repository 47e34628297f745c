package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	s.signal(syscall.SIGHUP)
	newPid := s.handedOver(30 * time.Second)
	load.progress(t, 200)
	load.finish(t)
	if !alive(newPid) {
		t.Fatal("new master not running")
	}
}

// TestFullLogDiskLosesNoRequest: when the disk holding the access log is
// full, requests are still answered.
func TestFullLogDiskLosesNoRequest(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs (needs root, as CI runs): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	access := filepath.Join(dir, "access.log")
	s := start(t, opts{workers: 2, extra: "log {\n  level = \"info\"\n  access = \"" + access + "\"\n}"})
	load := startLoad(s.addr, 8)
	// Far more lines than 64 KiB holds.
	load.progress(t, 3000)
	eventually(t, 10*time.Second, "the access log's disk to fill", func() bool {
		var st syscall.Statfs_t
		return syscall.Statfs(dir, &st) == nil && st.Bavail == 0
	})
	load.progress(t, 1000)
	load.finish(t)
	// Said, but not once per lost line.
	s.waitLog(`access log write failed; lines are lost until it recovers.*lines_lost=`, 10*time.Second)
	if n := strings.Count(s.logs.String(), "access log write failed"); n > 4 {
		t.Fatalf("%d log lines for a full disk in a few seconds: not rate-limited", n)
	}
}

// TestUSR2KillOldMasterMidHandOver: SIGKILL of the old master while its
// successor boots leaves the successor serving, with the pidfile naming it
// and no orphans of the old one.
func TestUSR2KillOldMasterMidHandOver(t *testing.T) {
	s := start(t, opts{workers: 2, extra: `control_socket = "forkd.sock"`})
	oldWorkers := s.workers()
	pidfile := filepath.Join(s.dir, "forkd.pid")
	s.signal(syscall.SIGUSR2)
	m := s.waitLog(`binary upgrade: new master started.*new_master_pid=(\d+)`, 20*time.Second)
	newPid, _ := strconv.Atoi(m[1])
	stopAtEnd(t, newPid)
	s.signal(syscall.SIGKILL)
	s.waitExit(10 * time.Second)
	eventually(t, 20*time.Second, "the pidfile to name the new master", func() bool {
		b, _ := os.ReadFile(pidfile)
		return strings.TrimSpace(string(b)) == strconv.Itoa(newPid)
	})
	eventually(t, 10*time.Second, "the old master's workers to be gone", func() bool {
		for _, pid := range oldWorkers {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "the new master to serve", func() bool {
		code, _, err := get(s.addr, "/")
		return err == nil && code == 200
	})
	if st := status(t, s.cfg); st.Status.MasterPID != newPid {
		t.Fatalf("status from master %d, want %d", st.Status.MasterPID, newPid)
	}
}

// TestUSR2KillNewMaster: SIGKILL of the successor leaves the old master
// serving and controllable, with its pidfile.
func TestUSR2KillNewMaster(t *testing.T) {
	s := start(t, opts{workers: 2, extra: `control_socket = "forkd.sock"`})
	pidfile := filepath.Join(s.dir, "forkd.pid")
	load := startLoad(s.addr, 4)
	load.progress(t, 100)
	s.signal(syscall.SIGUSR2)
	m := s.waitLog(`binary upgrade: new master started.*new_master_pid=(\d+)`, 20*time.Second)
	newPid, _ := strconv.Atoi(m[1])
	syscall.Kill(newPid, syscall.SIGKILL)
	s.waitLog(`binary upgrade failed; the old master keeps serving`, 20*time.Second)
	load.progress(t, 100)
	load.finish(t)
	if st := status(t, s.cfg); st.Status.MasterPID != s.cmd.Process.Pid {
		t.Fatalf("status from master %d, want the old one", st.Status.MasterPID)
	}
	if b, _ := os.ReadFile(pidfile); strings.TrimSpace(string(b)) != strconv.Itoa(s.cmd.Process.Pid) {
		t.Fatalf("pidfile %q", b)
	}
	eventually(t, 10*time.Second, "the new master's workers to be gone", func() bool {
		return len(children(newPid)) == 0
	})
}
