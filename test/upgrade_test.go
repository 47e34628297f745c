// Binary upgrade (USR2): the hand-over between two masters, and its failures.

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUSR2NewMasterWithoutPidfileFails: a new master that cannot write the
// pidfile (disk full, read-only; here an immutable directory, which stops
// root too) fails the upgrade, and the old one keeps serving with its
// pidfile and control socket.
func TestUSR2NewMasterWithoutPidfileFails(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `control_socket = "forkd.sock"`})
	pidfile := filepath.Join(s.dir, "forkd.pid")
	if out, err := exec.Command("chattr", "+i", s.dir).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i (e2fsprogs): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", s.dir).Run() })
	s.signal(syscall.SIGUSR2)
	s.waitLog(`binary upgrade failed; the old master keeps serving`, 20*time.Second)
	// The output is copied from a pipe: wait for the line.
	s.seen(`cannot write pidfile`, 10*time.Second)
	if b, _ := os.ReadFile(pidfile); strings.TrimSpace(string(b)) != strconv.Itoa(s.cmd.Process.Pid) {
		t.Fatalf("pidfile after the failed upgrade: %q", b)
	}
	if st := status(t, s.cfg); st.Status.MasterPID != s.cmd.Process.Pid {
		t.Fatalf("status after the failed upgrade: %+v", st.Status)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after the failed upgrade: %d %v", code, err)
	}
	if s.logs.has(`reaped an orphan`) {
		t.Fatal("the failed successor was taken for an orphan")
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

func TestUSR2BinaryUpgradeUnderLoad(t *testing.T) {
	s := start(t, opts{workers: 2})
	oldPid := s.cmd.Process.Pid
	pidfile := filepath.Join(s.dir, "forkd.pid")
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	newPid := s.handedOver(20 * time.Second)
	eventually(t, 5*time.Second, "pidfile to name the new master", func() bool {
		b, _ := os.ReadFile(pidfile)
		return strings.TrimSpace(string(b)) == strconv.Itoa(newPid)
	})
	load.progress(t, 200)
	load.finish(t)
	if newPid == oldPid || !alive(newPid) {
		t.Fatalf("new master %d not running", newPid)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET from the new master: %d %v", code, err)
	}
	if n := len(children(newPid)); n != 2 {
		t.Fatalf("new master has %d workers, want 2", n)
	}
}

func TestUSR2FailedUpgradeKeepsServing(t *testing.T) {
	s := start(t, opts{workers: 1})
	// Break the configuration: the new master refuses to start, the old one
	// stays.
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nnonsense = true\n")
	s.signal(syscall.SIGUSR2)
	s.waitLog(`binary upgrade failed; the old master keeps serving`, 20*time.Second)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after a failed upgrade: %d %v", code, err)
	}
}
