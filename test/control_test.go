// The control socket under clients that misbehave.

package test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

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

func TestControlCLI(t *testing.T) {
	s := start(t, opts{workers: 2})
	out, code := runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, strconv.Itoa(s.cmd.Process.Pid)) {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
	for _, pid := range s.workers() {
		if !strings.Contains(out, strconv.Itoa(pid)) {
			t.Fatalf("status lacks worker %d:\n%s", pid, out)
		}
	}
	// Flags before the command work as well as after it.
	out, code = runCLI(t, "-c", s.cfg, "status", "-json")
	var resp struct {
		OK     bool
		Status struct {
			MasterPID int `json:"master_pid"`
			Workers   []struct {
				Slot  int
				PID   int
				State string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 0 || !resp.OK {
		t.Fatalf("status -json exit %d, %v:\n%s", code, err, out)
	}
	if resp.Status.MasterPID != s.cmd.Process.Pid || len(resp.Status.Workers) != 2 {
		t.Fatalf("status -json: %+v", resp)
	}
	if out, code = runCLI(t, "scale"); code != 2 {
		t.Fatalf("scale without a number: exit %d, want 2 (usage)\n%s", code, out)
	}
	if out, code = runCLI(t, "-c", s.cfg, "scale", "3"); code != 0 {
		t.Fatalf("scale: %d %s", code, out)
	}
	eventually(t, 10*time.Second, "3 workers", func() bool { return len(s.workers()) == 3 })
	if out, code = runCLI(t, "reload", "-c", s.cfg); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	// A broken file: the command fails with file:line, the master keeps serving.
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nworker_timeout = \"never\"\n")
	out, code = runCLI(t, "reload", "-c", s.cfg+".missing")
	if code != 1 {
		t.Fatalf("reload with a missing -c file: exit %d\n%s", code, out)
	}
	sock := strings.TrimSuffix(filepath.Join(s.dir, "forkd.pid"), ".pid") + ".sock"
	rr, err := controlCall(sock, "reload")
	if err != nil || rr.OK || !regexp.MustCompile(`config\.hcl:\d+`).MatchString(rr.Error) {
		t.Fatalf("reload of a broken config over the socket: %+v %v", rr, err)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after a refused reload: %d %v", code, err)
	}
	s.rewrite(string(good))
	if out, code = runCLI(t, "stop", "-c", s.cfg); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("master exit %d after stop", code)
	}
	out, code = runCLI(t, "status", "-c", s.cfg)
	if code != 1 || !strings.Contains(out, "no forkd master is running") {
		t.Fatalf("status with no master: exit %d:\n%s", code, out)
	}
}
