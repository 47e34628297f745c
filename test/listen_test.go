// Listeners of every kind: IPv6 and unix sockets.

package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestListenIPv6AndUnix binds an IPv6 loopback address and a unix socket
// whose path holds a stale socket file.
func TestListenIPv6AndUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "fk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "forkd.sock")
	// A stale socket file: bound, then the listener is gone.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	extra := fmt.Sprintf("listen {\n  address = \"unix:%s\"\n  mode = \"0660\"\n}\n", sock)
	v6 := ""
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6 = ln.Addr().String()
		ln.Close()
		extra += fmt.Sprintf("listen {\n  address = \"%s\"\n}\n", v6)
	}
	s := start(t, opts{workers: 2, extra: extra})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	c := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://unix/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello\n" {
		t.Fatalf("over unix socket: %d %q", resp.StatusCode, b)
	}
	if v6 != "" {
		if code, body, err := get(v6, "/"); err != nil || code != 200 || body != "hello\n" {
			t.Fatalf("over IPv6: %d %q %v", code, body, err)
		}
	} else {
		t.Log("no IPv6 loopback here; IPv6 part skipped")
	}
	s.signal(syscall.SIGTERM)
	s.waitExit(15 * time.Second)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind after exit: %v", err)
	}
}
