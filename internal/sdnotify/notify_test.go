package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenNotify opens a datagram socket standing in for systemd's
// notification socket and points NOTIFY_SOCKET at it.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv(EnvNotifySocket, name)
	return c
}

// recv reads one datagram, failing the test if none arrives in time.
func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := c.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierDatagrams(t *testing.T) {
	c := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	n := New()
	defer n.Close()
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}

	cases := []struct {
		send func() error
		want string
	}{
		{n.Ready, "READY=1"},
		{n.Stopping, "STOPPING=1"},
		{n.Watchdog, "WATCHDOG=1"},
		{func() error { return n.Status("3 workers, generation 2") }, "STATUS=3 workers, generation 2"},
		{func() error { return n.Status("two\nlines") }, "STATUS=two lines"},
		{func() error { return n.MainPID(4242) }, "MAINPID=4242"},
		{func() error { return n.Send("READY=1", "STATUS=up") }, "READY=1\nSTATUS=up"},
	}
	for _, tc := range cases {
		if err := tc.send(); err != nil {
			t.Fatalf("send %q: %v", tc.want, err)
		}
		if got := recv(t, c); got != tc.want {
			t.Errorf("datagram = %q, want %q", got, tc.want)
		}
	}
}

func TestNotifierReloading(t *testing.T) {
	c := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	n := New()
	defer n.Close()

	before, err := monotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after, err := monotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	got := recv(t, c)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("datagram = %q, want RELOADING=1 and MONOTONIC_USEC", got)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC: %v", err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC = %d, want within [%d, %d]", usec, before, after)
	}
}

func TestNotifierAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@forkd-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := listenNotify(t, name)
	n := New()
	defer n.Close()
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("datagram = %q, want READY=1", got)
	}
}

func TestNotifierDisabled(t *testing.T) {
	t.Setenv(EnvNotifySocket, "")
	os.Unsetenv(EnvNotifySocket)
	n := New()
	if n.Enabled() {
		t.Fatal("Enabled() = true without NOTIFY_SOCKET")
	}
	for _, f := range []func() error{n.Ready, n.Reloading, n.Stopping, n.Watchdog, n.Close} {
		if err := f(); err != nil {
			t.Errorf("disabled notifier returned %v", err)
		}
	}

	var nilN *Notifier
	if err := nilN.Ready(); err != nil {
		t.Errorf("nil notifier Ready() = %v", err)
	}
	if _, ok := nilN.WatchdogInterval(); ok {
		t.Error("nil notifier has a watchdog")
	}
}

func TestNotifierErrors(t *testing.T) {
	t.Setenv(EnvNotifySocket, "vsock:2:1234")
	n := New()
	if err := n.Ready(); !errors.Is(err, ErrUnsupportedSocket) {
		t.Errorf("Ready() with vsock address = %v, want ErrUnsupportedSocket", err)
	}

	// Nobody listening: the error is reported, not swallowed.
	t.Setenv(EnvNotifySocket, filepath.Join(t.TempDir(), "absent"))
	n = New()
	if err := n.Ready(); err == nil {
		t.Error("Ready() to a missing socket returned nil")
	}
	n.Close()
	if err := n.Ready(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Ready() after Close = %v, want os.ErrClosed", err)
	}
}

func TestNotifierSurvivesUnsetEnvironment(t *testing.T) {
	c := listenNotify(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv(EnvWatchdogUsec, "30000000")
	t.Setenv(EnvListenPID, "1")
	n := New()
	defer n.Close()
	UnsetEnvironment()
	for _, k := range systemdEnv {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after UnsetEnvironment", k, v)
		}
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("datagram = %q, want READY=1", got)
	}
	if d, ok := n.WatchdogInterval(); !ok || d != 15*time.Second {
		t.Errorf("WatchdogInterval() = %v, %v; want 15s, true", d, ok)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := os.Getpid()
	cases := []struct {
		usec, wpid string
		want       time.Duration
		ok         bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, true},
		{"30000000", strconv.Itoa(pid), 15 * time.Second, true},
		{"30000000", strconv.Itoa(pid + 1), 0, false},
		{"30000000", "junk", 0, false},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"junk", "", 0, false},
		{"1000", "", 500 * time.Microsecond, true},
	}
	for _, tc := range cases {
		t.Setenv(EnvWatchdogUsec, tc.usec)
		t.Setenv(EnvWatchdogPID, tc.wpid)
		d, ok := New().WatchdogInterval()
		if d != tc.want || ok != tc.ok {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v, %v; want %v, %v",
				tc.usec, tc.wpid, d, ok, tc.want, tc.ok)
		}
	}
}

func TestFilterEnv(t *testing.T) {
	in := []string{
		"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=2",
		"LISTEN_FDS_EXTRA=keep", "WATCHDOG_USEC=1", "WATCHDOG_PID=7",
		"LISTEN_PID=9", "LISTEN_FDNAMES=a:b", "HOME=/root",
	}
	want := []string{"PATH=/bin", "LISTEN_FDS_EXTRA=keep", "HOME=/root"}
	if got := FilterEnv(in); !slices.Equal(got, want) {
		t.Errorf("FilterEnv = %q, want %q", got, want)
	}
}
