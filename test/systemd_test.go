// systemd: the watchdog and MAINPID.

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

// notifyListener is a fake systemd NOTIFY_SOCKET.
type notifyListener struct {
	path string
	msgs chan string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifyListener{path: filepath.Join(dir, "notify.sock"), msgs: make(chan string, 100)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next datagram that is not a bare STATUS= update.
func (n *notifyListener) next(t *testing.T) string {
	t.Helper()
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if strings.HasPrefix(m, "STATUS=") && !strings.Contains(m, "\n") {
				continue
			}
			return m
		case <-time.After(15 * time.Second):
			t.Fatal("no sd_notify message within 15s")
			return ""
		}
	}
}

func TestSystemdNotifySequence(t *testing.T) {
	n := newNotifyListener(t)
	s := start(t, opts{workers: 2, env: []string{"NOTIFY_SOCKET=" + n.path}})
	expect := func(re string) string {
		t.Helper()
		m := n.next(t)
		if !regexp.MustCompile(re).MatchString(m) {
			t.Fatalf("sd_notify message %q does not match %q", m, re)
		}
		return m
	}
	expect(`^READY=1\nSTATUS=generation 1: 2/2 workers ready$`)

	s.signal(syscall.SIGHUP)
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=generation 2: \d/2 workers ready$`)

	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nworkers = \"x\"\n")
	s.signal(syscall.SIGHUP)
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=reload failed: .*config\.hcl:\d+`)

	s.signal(syscall.SIGTERM)
	expect(`^STOPPING=1$`)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Workers must not inherit NOTIFY_SOCKET: nothing but the master spoke.
}

func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate not installed (Debian package systemd; .ci/run installs it)")
	}
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "config.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`workers = 2
listen { address = "%s" }
site "x" {
  hosts = ["*"]
  route "/" {
    respond { body = "activated\n" }
  }
}
`, addr)), 0o644)
	logs := newLogWatcher()
	cmd := exec.Command(sa, "-l", addr, binary, "-c", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("output:\n%s", logs.String())
		}
	})
	// systemd-socket-activate binds first and starts forkd on the first
	// connection; that connection is served by forkd's workers.
	eventually(t, 10*time.Second, "the socket to be bound", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	code, body, err := get(addr, "/")
	if err != nil || code != 200 || body != "activated\n" {
		t.Fatalf("GET = %d %q %v", code, body, err)
	}
	if _, err := logs.wait(regexp.MustCompile(`using socket from systemd.*address=`+regexp.QuoteMeta(addr)), 5*time.Second); err != nil {
		t.Fatalf("forkd did not take the activated socket: %v", err)
	}
	// A reload keeps the activated socket.
	cmd.Process.Signal(syscall.SIGHUP)
	if _, err := logs.wait(regexp.MustCompile(`all workers ready.*generation=2`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after HUP = %d %v", code, err)
	}
}
