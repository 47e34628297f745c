package test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/zone"
)

// rateSites limits every request by client address with the rate_limit
// block "ip".
const rateSites = `site "test" {
  rate_limit = ["ip"]
  route "/" {
    respond {
      body = "hello\n"
    }
  }
}`

// rateBlock is a rate_limit block: one request a minute beyond burst, so
// that nothing refills during a test.
func rateBlock(name, key string, burst int) string {
	return fmt.Sprintf("rate_limit %q {\n  key = %q\n  rate = \"1r/m\"\n  burst = %d\n}\n", name, key, burst)
}

// getWith does one request on a fresh connection, with the header fields
// hdrs ("Name: value"), and returns the response's status and Retry-After.
func getWith(addr, path string, hdrs ...string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// tryCount sends n requests, each on its own connection, and returns how
// many got 200; any other status than 200 and 429 (with Retry-After) is
// an error.
func tryCount(addr string, n int, hdrs ...string) (int, error) {
	ok := 0
	for range n {
		code, ra, err := getWith(addr, "/", hdrs...)
		switch {
		case err != nil:
			return ok, err
		case code == 200:
			ok++
		case code == 429 && ra != "":
		default:
			return ok, fmt.Errorf("status %d, Retry-After %q", code, ra)
		}
	}
	return ok, nil
}

// countAllowed is tryCount that fails the test on an error.
func countAllowed(t *testing.T, addr string, n int, hdrs ...string) int {
	t.Helper()
	ok, err := tryCount(addr, n, hdrs...)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// zoneStatus is the zones part of `forkd status -json`.
type zoneStatus struct {
	Status struct {
		MasterPID int                  `json:"master_pid"`
		Zones     []control.ZoneStatus `json:"zones"`
	} `json:"status"`
}

func zonesOf(t *testing.T, cfg string) zoneStatus {
	t.Helper()
	out, code := runCLI(t, "status", "-c", cfg, "-json")
	var st zoneStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status -json: exit %d, %v:\n%s", code, err, out)
	}
	return st
}

// TestRateLimitAcrossWorkers: four workers, one client address; the limit
// holds for the client as a whole, not per worker, though several workers
// answer it.
func TestRateLimitAcrossWorkers(t *testing.T) {
	s := start(t, opts{workers: 4, sites: rateSites,
		extra: rateBlock("ip", "{remote_addr}", 9) + "log {\n  level = \"info\"\n  access = \"-\"\n  access_format = \"json\"\n}\n"})
	// Batches of parallel requests until at least two workers have
	// answered (the access log names them): however many requests that
	// takes, exactly burst+1 may pass.
	pid := regexp.MustCompile(`"pid":(\d+)`)
	allowed := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var failed error
		for range 8 {
			wg.Go(func() {
				n, err := tryCount(s.addr, 5)
				mu.Lock()
				allowed += n
				failed = cmp.Or(failed, err)
				mu.Unlock()
			})
		}
		wg.Wait()
		if failed != nil {
			t.Fatal(failed)
		}
		pids := make(map[string]bool)
		for _, m := range pid.FindAllStringSubmatch(s.logs.String(), -1) {
			pids[m[1]] = true
		}
		if len(pids) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one worker answered every request; the test shows nothing")
		}
	}
	if allowed != 10 {
		t.Fatalf("%d requests allowed, want burst+1 = 10", allowed)
	}
}

// TestRateLimitKeptAcrossReloadAndUpgrade: an unchanged block keeps its
// counts through HUP and USR2; status and metrics show them; a changed
// block starts afresh.
func TestRateLimitKeptAcrossReloadAndUpgrade(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	extra := fmt.Sprintf("control_socket = \"forkd.sock\"\nmetrics {\n  address = %q\n}\nshared {\n  size = \"1MiB\"\n}\n", maddr)
	s := start(t, opts{workers: 2, sites: rateSites, extra: extra + rateBlock("ip", "{remote_addr}", 4)})
	if got := countAllowed(t, s.addr, 5); got != 5 {
		t.Fatalf("%d of the burst allowed", got)
	}

	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	if got := countAllowed(t, s.addr, 3); got != 0 {
		t.Fatalf("after HUP, %d allowed: the zone was not kept", got)
	}

	s.signal(syscall.SIGUSR2)
	pid := s.handedOver(30 * time.Second)
	if got := countAllowed(t, s.addr, 3); got != 0 {
		t.Fatalf("after USR2, %d allowed: the zone did not pass to the new master", got)
	}
	st := zonesOf(t, s.cfg)
	if st.Status.MasterPID != pid || len(st.Status.Zones) != 2 {
		t.Fatalf("status: %+v", st.Status)
	}
	z := st.Status.Zones[0]
	if z.Name != "ip" || z.Kind != "rate_limit" || z.Allowed != 5 || z.Limited != 6 || z.Entries != 1 || z.Capacity == 0 {
		t.Fatalf("zone ip: %+v", z)
	}
	if st.Status.Zones[1].Kind != "shared" {
		t.Fatalf("zones: %+v", st.Status.Zones)
	}
	text, _ := runCLI(t, "status", "-c", s.cfg)
	if !regexp.MustCompile(`(?m)^ip +rate_limit +1 +\d+ +0 +5 +6$`).MatchString(text) {
		t.Fatalf("status text:\n%s", text)
	}
	_, body, err := get(maddr, "/metrics")
	if err != nil || !strings.Contains(body, `forkd_rate_limit_requests_total{zone="ip",result="limited"} 6`) ||
		!strings.Contains(body, `forkd_zone_entries{zone="ip",kind="rate_limit"} 1`) {
		t.Fatalf("metrics (%v):\n%s", err, body)
	}

	// A changed block gets a new zone: the client starts afresh.
	s.rewrite(fmt.Sprintf("workers = 2\npidfile = %q\nlisten {\n  address = %q\n}\n%s%s%s",
		filepath.Join(s.dir, "forkd.pid"), s.addr, extra, rateBlock("ip", "{remote_addr}", 1), rateSites))
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the changed block's zone", func() bool {
		st := zonesOf(t, s.cfg)
		return len(st.Status.Zones) == 2 && st.Status.Zones[0].Allowed == 0 && st.Status.Zones[0].Limited == 0
	})
	if got := countAllowed(t, s.addr, 4); got != 2 {
		t.Fatalf("after changing the block, %d allowed, want burst+1 = 2", got)
	}
}

// TestRateLimitSurvivesWorkerKills SIGKILLs workers in a loop while
// clients hammer the zone with many keys; then every slot must be valid
// and a new key must get exactly its burst.
func TestRateLimitSurvivesWorkerKills(t *testing.T) {
	s := start(t, opts{workers: 2, sites: rateSites, extra: "worker_timeout = \"30s\"\n" +
		strings.Replace(rateBlock("ip", "{header.X-Key}", 3), "}\n", "  size = \"16KiB\"\n}\n", 1)})
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent atomic.Int64
	for c := range 4 {
		wg.Go(func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Timeout: clientTimeout, Transport: tr}
			for i := 0; !stop.Load(); i++ {
				req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
				req.Header.Set("X-Key", strconv.Itoa(c*1_000_000+i%3000))
				if resp, err := cl.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					sent.Add(1)
				}
			}
		})
	}
	for range 6 {
		before := sent.Load()
		eventually(t, 20*time.Second, "requests served", func() bool { return sent.Load() > before+50 })
		killed := s.workers()
		for _, pid := range killed {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		eventually(t, 30*time.Second, "replacements", func() bool {
			now := s.workers()
			for _, pid := range killed {
				if slices.Contains(now, pid) {
					return false
				}
			}
			return len(now) == 2
		})
	}
	stop.Store(true)
	wg.Wait()

	l := openZone(t, s.cmd.Process.Pid, "ip")
	defer l.Close()
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Evictions == 0 || st.Allowed == 0 {
		t.Fatalf("the load did not work the zone: %+v", st)
	}
	if got := countAllowed(t, s.addr, 6, "X-Key: after"); got != 4 {
		t.Fatalf("a new key: %d allowed, want burst+1 = 4", got)
	}
}

// openZone maps the zone of the rate_limit block name from the master's
// descriptors, as a worker would.
func openZone(t *testing.T, pid int, name string) *zone.Limiter {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if !strings.HasPrefix(target, "/memfd:forkd-zone-"+name+" ") {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		l, err := zone.OpenLimiter(f)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Fatalf("the master (pid %d) holds no zone %q", pid, name)
	return nil
}

// TestRateLimitOverH2C: HTTP/2 streams pass the same limit as HTTP/1.1
// requests, and get the same 429 with Retry-After.
func TestRateLimitOverH2C(t *testing.T) {
	s := start(t, opts{workers: 2, sites: rateSites, listen: "  protocols = [\"http/1.1\", \"h2c\"]\n",
		extra: rateBlock("ip", "{remote_addr}", 2)})
	c := h2cClient()
	allowed := 0
	for range 5 {
		resp, err := c.Get("http://" + s.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.ProtoMajor != 2:
			t.Fatalf("%s, not HTTP/2", resp.Proto)
		case resp.StatusCode == 200:
			allowed++
		case resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "":
			t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if allowed != 3 {
		t.Fatalf("%d streams allowed, want burst+1 = 3", allowed)
	}
	if got := countAllowed(t, s.addr, 2); got != 0 {
		t.Fatalf("HTTP/1.1 after HTTP/2: %d allowed; the limit is the client's, whatever its protocol", got)
	}
}
