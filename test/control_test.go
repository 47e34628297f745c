// The control socket under clients that misbehave.

package test

import (
	"net"
	"path/filepath"
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
