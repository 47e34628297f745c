// Memory: the master stays flat, workers over their limit are recycled.

package test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMasterMemoryFlat: reloads do not grow the master.
func TestMasterMemoryFlat(t *testing.T) {
	for _, tc := range []struct {
		workers, reloads, limitMiB int
	}{
		{8, 20, 25},
		{64, 20, 40},
	} {
		t.Run(fmt.Sprintf("%d-workers", tc.workers), func(t *testing.T) {
			s := start(t, opts{workers: tc.workers, extra: `log {
  level = "info"
}`})
			start := rssKiB(t, s.cmd.Process.Pid)
			for i := 2; i <= tc.reloads+1; i++ {
				s.signal(syscall.SIGHUP)
				s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, i), 60*time.Second)
			}
			eventually(t, 60*time.Second, "old workers to stop", func() bool { return len(s.workers()) == tc.workers })
			end := rssKiB(t, s.cmd.Process.Pid)
			t.Logf("master RSS: %d KiB at start, %d KiB after %d reloads of %d workers", start, end, tc.reloads, tc.workers)
			if end > tc.limitMiB<<10 {
				t.Fatalf("master RSS %d KiB after %d reloads of %d workers, over %d MiB", end, tc.reloads, tc.workers, tc.limitMiB)
			}
		})
	}
}

// TestMaxWorkerMemoryRecycles: a worker whose RSS stays above
// max_worker_memory is replaced gracefully, one at a time, losing nothing.
func TestMaxWorkerMemoryRecycles(t *testing.T) {
	s := start(t, opts{workers: 2, bin: filepath.Join(binDir, "crashy"), noSites: true,
		extra: "max_worker_memory = \"48MiB\"\nmax_worker_memory_window = \"2s\""})
	load := startLoad(s.addr, 4)
	load.progress(t, 100)
	_, body, err := get(s.addr, "/grow?mb=64")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscanf(body, "grown 64 MiB in %d", &pid)
	m := s.waitLog(`worker above max_worker_memory; recycling it gracefully.*worker_pid=(\d+).*rss_bytes=(\d+)`, 20*time.Second)
	if m[1] != strconv.Itoa(pid) {
		t.Fatalf("recycled worker %s, but %d grew", m[1], pid)
	}
	if rss, _ := strconv.Atoi(m[2]); rss < 48<<20 {
		t.Fatalf("logged RSS %d is under the limit", rss)
	}
	s.waitLog(fmt.Sprintf(`worker stopped.*worker_pid=%d.*cause=max_worker_memory`, pid), 20*time.Second)
	load.progress(t, 100)
	load.finish(t)
	if n := len(s.workers()); n != 2 {
		t.Fatalf("%d workers after recycling, want 2", n)
	}
}
