package test

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSharedStoreExample runs examples/shared on four workers: its
// counter counts every request once whichever worker answers, a value one
// worker sets the others read, and both survive a worker's SIGKILL and a
// reload.
func TestSharedStoreExample(t *testing.T) {
	s := start(t, opts{workers: 4, bin: filepath.Join(binDir, "shared"), noSites: true, extra: "shared {\n  size = \"1MiB\"\n}\n"})
	visits := regexp.MustCompile(`^visits: (\d+) \(worker (\d+)\)\n$`)
	pids := make(map[string]bool)
	next := 1
	count := func(n int) {
		t.Helper()
		for range n {
			code, body, err := get(s.addr, "/visits")
			m := visits.FindStringSubmatch(body)
			if err != nil || code != 200 || m == nil || m[1] != strconv.Itoa(next) {
				t.Fatalf("visit %d: %d %q %v", next, code, body, err)
			}
			pids[m[2]] = true
			next++
		}
	}
	// Parallel batches until two workers at least have answered: the
	// counts they return, together, are 1 to N with none twice.
	seen := make(map[int]bool)
	deadline := time.Now().Add(30 * time.Second)
	for len(pids) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("one worker answered every request; the test shows nothing")
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var failed error
		for range 8 {
			wg.Go(func() {
				for range 5 {
					code, body, err := get(s.addr, "/visits")
					m := visits.FindStringSubmatch(body)
					mu.Lock()
					if err != nil || code != 200 || m == nil {
						failed = cmp.Or(failed, fmt.Errorf("/visits: %d %q %v", code, body, err))
					} else {
						n, _ := strconv.Atoi(m[1])
						if seen[n] {
							failed = cmp.Or(failed, fmt.Errorf("count %d returned twice", n))
						}
						seen[n] = true
						pids[m[2]] = true
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if failed != nil {
			t.Fatal(failed)
		}
	}
	for n := 1; n <= len(seen); n++ {
		if !seen[n] {
			t.Fatalf("counts %v: %d missing", seen, n)
		}
	}
	next = len(seen) + 1
	count(5)
	req, _ := http.NewRequest("PUT", "http://"+s.addr+"/kv/greeting?ttl=1h", strings.NewReader("hello, workers"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	for range 10 {
		if code, body, err := get(s.addr, "/kv/greeting"); code != 200 || body != "hello, workers" || err != nil {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
	}
	syscall.Kill(s.workers()[0], syscall.SIGKILL)
	s.waitLog(`worker died`, 5*time.Second)
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	count(10)
	if code, body, _ := get(s.addr, "/kv/greeting"); code != 200 || body != "hello, workers" {
		t.Fatalf("after the reload: %d %q", code, body)
	}
	req, _ = http.NewRequest("DELETE", "http://"+s.addr+"/kv/greeting", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if code, _, _ := get(s.addr, "/kv/greeting"); code != 404 {
		t.Fatalf("deleted key: %d", code)
	}
}
