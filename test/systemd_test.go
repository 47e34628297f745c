// systemd: the watchdog and MAINPID.

package test

import (
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
