// Helpers the integration tests share: load loops, wrk runs, the control
// socket and status, process facts.

package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/control"
)

// statusJSON is what `forkd status -json` says, in the parts these tests
// look at.
type statusJSON struct {
	OK     bool `json:"ok"`
	Status struct {
		MasterPID  int    `json:"master_pid"`
		Generation int    `json:"generation"`
		State      string `json:"state"`
		Reloading  bool   `json:"reloading"`
		LastReload *struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"last_reload"`
		Workers []struct {
			Slot       int    `json:"slot"`
			PID        int    `json:"pid"`
			Generation int    `json:"generation"`
			State      string `json:"state"`
		} `json:"workers"`
		Upstreams []control.UpstreamStatus `json:"upstreams"`
	} `json:"status"`
}

func status(t *testing.T, cfg string) statusJSON {
	t.Helper()
	out, code := runCLI(t, "status", "-c", cfg, "-json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || !st.OK {
		t.Fatalf("status -json: exit %d, %v:\n%s", code, err, out)
	}
	return st
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// loadLoop sends requests from several clients until stopped and counts
// failures.
type loadLoop struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(addr string, clients int) *loadLoop {
	l := &loadLoop{stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableKeepAlives: i%4 == 3}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: clientTimeout}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				l.ok.Add(1)
			}
		}(i)
	}
	return l
}

// progress waits until n more requests have succeeded.
func (l *loadLoop) progress(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	eventually(t, 20*time.Second, fmt.Sprintf("%d more successful requests", n), func() bool { return l.ok.Load() >= want })
}

func (l *loadLoop) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("requests: %d ok, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 {
		t.Fatalf("%d requests failed (first: %v)", l.failed.Load(), l.firstErr.Load())
	}
	if l.ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// wrkRun is a wrk process started by startWrk.
type wrkRun struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// startWrk starts wrk with args; the test stops it with stop, or cleanup
// kills it.
func startWrk(t testing.TB, wrk string, args ...string) *wrkRun {
	t.Helper()
	w := &wrkRun{t: t, cmd: exec.Command(wrk, args...), out: &syncBuffer{}, done: make(chan struct{})}
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		if !w.exited() {
			_ = w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

func (w *wrkRun) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// stop interrupts wrk, which then prints its summary, and returns its output.
func (w *wrkRun) stop(d time.Duration) string {
	w.t.Helper()
	if w.exited() {
		w.t.Fatalf("wrk ended on its own: %v\n%s", w.err, w.out)
	}
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		w.t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(d):
		w.t.Fatalf("wrk did not exit within %v of SIGINT:\n%s", d, w.out)
	}
	if w.err != nil {
		w.t.Fatalf("wrk: %v\n%s", w.err, w.out)
	}
	return w.out.String()
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// servedRequests asks the master over its control socket how many requests
// its workers have reported in their heartbeats.
func servedRequests(t testing.TB, s *server) uint64 {
	t.Helper()
	resp, err := control.Call(filepath.Join(s.dir, "forkd.sock"), control.Request{Cmd: control.CmdStatus}, 5*time.Second)
	if err != nil || resp.Status == nil {
		return 0
	}
	var n uint64
	for _, w := range resp.Status.Workers {
		n += w.Requests
	}
	return n
}

// controlCall speaks the control protocol directly (the CLI reads the same
// config file as the master, which a test may have just broken).
func controlCall(sock, cmd string) (struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}, error) {
	var resp struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return resp, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "{\"cmd\":%q}\n", cmd); err != nil {
		return resp, err
	}
	err = json.NewDecoder(c).Decode(&resp)
	return resp, err
}
