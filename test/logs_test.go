// Logs: a full disk loses no request.

package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
