// Logs: a full disk loses no request.

package test

import (
	"fmt"
	"os"
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

func TestUSR1ReopensLogs(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "forkd.log")
	accessPath := filepath.Join(dir, "access.log")
	s := start(t, opts{workers: 2, extra: fmt.Sprintf(`log {
  level = "info"
  file = "%s"
  access = "%s"
}`, logPath, accessPath), noWait: true})
	eventually(t, 15*time.Second, "workers ready in the log file", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "worker ready") >= 2
	})
	if code, _, err := get(s.addr, "/first"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	eventually(t, 5*time.Second, "access line", func() bool {
		b, _ := os.ReadFile(accessPath)
		return strings.Contains(string(b), "/first")
	})
	// logrotate: move both files away, then USR1.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(accessPath, accessPath+".1"); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	eventually(t, 5*time.Second, "a new log file with the reopen line", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "log files reopened")
	})
	eventually(t, 5*time.Second, "every worker to reopen", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "log files reopened") >= 3
	})
	if code, _, err := get(s.addr, "/second"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	eventually(t, 5*time.Second, "the new access log to get the request", func() bool {
		b, _ := os.ReadFile(accessPath)
		return strings.Contains(string(b), "/second")
	})
	old, _ := os.ReadFile(accessPath + ".1")
	if strings.Contains(string(old), "/second") {
		t.Fatal("request logged to the rotated file")
	}
}

// TestLogFileGetsLastLineAndReopenFailureReachesStderr: the master's last
// line goes to log.file, and a USR1 that cannot reopen says so on stderr.
func TestLogFileGetsLastLineAndReopenFailureReachesStderr(t *testing.T) {
	logDir := t.TempDir()
	logFile := filepath.Join(logDir, "sub", "forkd.log")
	os.Mkdir(filepath.Dir(logFile), 0o755)
	s := start(t, opts{workers: 1, noWait: true, extra: fmt.Sprintf("log {\n  level = \"debug\"\n  file = %q\n}", logFile)})
	eventually(t, 15*time.Second, "workers ready in the log file", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "all workers ready")
	})
	// Rotate the directory away: reopening cannot create the file.
	if err := os.Rename(filepath.Dir(logFile), filepath.Join(logDir, "rotated")); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	s.waitLog(`reopening log file .* failed`, 10*time.Second)
	os.Mkdir(filepath.Dir(logFile), 0o755)
	s.signal(syscall.SIGUSR1)
	eventually(t, 10*time.Second, "log file recreated", func() bool {
		_, err := os.Stat(logFile)
		return err == nil
	})
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "master stopped") {
		t.Fatalf("the last line is not in the log file:\n%s", b)
	}
	if strings.Contains(s.logs.String(), "master stopped") {
		t.Fatal("the last line went to stderr")
	}
}
