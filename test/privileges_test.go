// Privileges: workers drop root and inherit only what is passed to them.

package test

import (
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strings"
	"testing"
)

func TestPrivilegeDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	s := start(t, opts{workers: 2, extra: `user = "nobody"`})
	for _, pid := range s.workers() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		st := string(b)
		uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(st)
		if uid == nil || uid[1] != nobody.Uid || uid[2] != nobody.Uid || uid[3] != nobody.Uid {
			t.Fatalf("worker %d uids %v, want nobody (%s)", pid, uid, nobody.Uid)
		}
		groups := regexp.MustCompile(`(?m)^Groups:[ \t]*(.*)$`).FindStringSubmatch(st)
		if groups == nil || strings.TrimSpace(groups[1]) != "" {
			t.Fatalf("worker %d supplementary groups %q, want none", pid, groups)
		}
	}
	if os.Geteuid() == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
		if !regexp.MustCompile(`(?m)^Uid:\s+0\s`).Match(b) {
			t.Fatal("master lost root")
		}
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
}

// TestWorkersInheritOnlyWhatIsPassed checks close-on-exec: a worker holds
// its listeners and its ipc socket, and none of the master's other sockets
// (control socket, metrics listener, other workers' ipc ends).
func TestWorkersInheritOnlyWhatIsPassed(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 3, extra: fmt.Sprintf("metrics {\n  address = \"%s\"\n}\n", maddr)})
	for _, pid := range s.workers() {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		var sockets []string
		distinct := map[string]bool{}
		for _, e := range ents {
			l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if strings.HasPrefix(l, "socket:") {
				sockets = append(sockets, e.Name()+"="+l)
				distinct[l] = true
			}
		}
		// One listener and one ipc socket. (The event loops' acceptor
		// holds a descriptor of its own for the listener: the same socket.)
		if len(distinct) != 2 {
			t.Errorf("worker %d holds %d sockets, want 2 (listener, ipc): %v", pid, len(distinct), sockets)
		}
	}
}
