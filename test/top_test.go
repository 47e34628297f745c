package test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// load keeps n keep-alive clients sending GET / to addr until the test
// ends.
func load(t *testing.T, addr string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// topRates parses a plain frame of `forkd top` into each worker row's
// REQ/S column, by pid, and the frame's total.
func topRates(frame string) (map[int]float64, float64) {
	rows := make(map[int]float64)
	total := -1.0
	for _, l := range strings.Split(frame, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "workers:" {
			for i := range f {
				if f[i] == "total:" && i+1 < len(f) {
					total, _ = strconv.ParseFloat(f[i+1], 64)
				}
			}
		}
		if len(f) < 9 {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		r, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			r = -1 // "-": no rate yet
		}
		rows[pid] = r
	}
	return rows, total
}

// TestTop runs `forkd top -n 1` against a master with two workers under
// load: the frame has both workers' rows and a request rate above zero.
func TestTop(t *testing.T) {
	s := start(t, opts{workers: 2})
	pids := s.workers()
	if len(pids) != 2 {
		t.Fatalf("workers %v, want 2", pids)
	}
	load(t, s.addr, 8)
	deadline := time.Now().Add(30 * time.Second)
	var out string
	for {
		var code int
		out, code = runCLI(t, "top", "-n", "1", "-interval", "300ms", "-c", s.cfg)
		if code != 0 {
			t.Fatalf("top exit %d:\n%s", code, out)
		}
		rows, total := topRates(out)
		ok := total > 0
		for _, pid := range pids {
			if _, seen := rows[pid]; !seen {
				t.Fatalf("frame lacks worker %d:\n%s", pid, out)
			}
		}
		positive := 0
		for _, r := range rows {
			if r > 0 {
				positive++
			}
		}
		if ok && positive > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request rate above zero within 30s; last frame:\n%s", out)
		}
	}
	for _, want := range []string{"master " + strconv.Itoa(s.cmd.Process.Pid), "running", "generation 1", "config: " + s.cfg, "SLOT  PID"} {
		if !strings.Contains(out, want) {
			t.Errorf("frame lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("a plain frame carries escape codes:\n%q", out)
	}

	// -n 2: two frames, each starting with its header.
	out, code := runCLI(t, "top", "-n", "2", "-interval", "100ms", "-c", s.cfg)
	if code != 0 || strings.Count(out, "forkd top  ") != 2 || !strings.Contains(out, "\n\nforkd top  ") {
		t.Fatalf("top -n 2 exit %d:\n%s", code, out)
	}
}
