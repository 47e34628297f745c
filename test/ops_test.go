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
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/control"
)

// notifyListener is a fake systemd NOTIFY_SOCKET.
type notifyListener struct {
	path string
	msgs chan string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifyListener{path: filepath.Join(dir, "notify.sock"), msgs: make(chan string, 100)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next datagram that is not a bare STATUS= update.
func (n *notifyListener) next(t *testing.T) string {
	t.Helper()
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if strings.HasPrefix(m, "STATUS=") && !strings.Contains(m, "\n") {
				continue
			}
			return m
		case <-time.After(15 * time.Second):
			t.Fatal("no sd_notify message within 15s")
			return ""
		}
	}
}

func TestSystemdNotifySequence(t *testing.T) {
	n := newNotifyListener(t)
	s := start(t, opts{workers: 2, env: []string{"NOTIFY_SOCKET=" + n.path}})
	expect := func(re string) string {
		t.Helper()
		m := n.next(t)
		if !regexp.MustCompile(re).MatchString(m) {
			t.Fatalf("sd_notify message %q does not match %q", m, re)
		}
		return m
	}
	expect(`^READY=1\nSTATUS=generation 1: 2/2 workers ready$`)

	s.signal(syscall.SIGHUP)
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=generation 2: \d/2 workers ready$`)

	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nworkers = \"x\"\n")
	s.signal(syscall.SIGHUP)
	expect(`^RELOADING=1\nMONOTONIC_USEC=\d+$`)
	expect(`^READY=1\nSTATUS=reload failed: .*config\.hcl:\d+`)

	s.signal(syscall.SIGTERM)
	expect(`^STOPPING=1$`)
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Workers must not inherit NOTIFY_SOCKET: nothing but the master spoke.
}

func TestSocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate not installed (Debian package systemd; .ci/run installs it)")
	}
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "config.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`workers = 2
listen { address = "%s" }
site "x" {
  hosts = ["*"]
  route "/" {
    respond { body = "activated\n" }
  }
}
`, addr)), 0o644)
	logs := newLogWatcher()
	cmd := exec.Command(sa, "-l", addr, binary, "-c", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("output:\n%s", logs.String())
		}
	})
	// systemd-socket-activate binds first and starts forkd on the first
	// connection; that connection is served by forkd's workers.
	eventually(t, 10*time.Second, "the socket to be bound", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	code, body, err := get(addr, "/")
	if err != nil || code != 200 || body != "activated\n" {
		t.Fatalf("GET = %d %q %v", code, body, err)
	}
	if _, err := logs.wait(regexp.MustCompile(`using socket from systemd.*address=`+regexp.QuoteMeta(addr)), 5*time.Second); err != nil {
		t.Fatalf("forkd did not take the activated socket: %v", err)
	}
	// A reload keeps the activated socket.
	cmd.Process.Signal(syscall.SIGHUP)
	if _, err := logs.wait(regexp.MustCompile(`all workers ready.*generation=2`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after HUP = %d %v", code, err)
	}
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

func TestUSR2BinaryUpgradeUnderLoad(t *testing.T) {
	s := start(t, opts{workers: 2})
	oldPid := s.cmd.Process.Pid
	pidfile := filepath.Join(s.dir, "forkd.pid")
	load := startLoad(s.addr, 8)
	load.progress(t, 200)
	s.signal(syscall.SIGUSR2)
	newPid := s.handedOver(20 * time.Second)
	eventually(t, 5*time.Second, "pidfile to name the new master", func() bool {
		b, _ := os.ReadFile(pidfile)
		return strings.TrimSpace(string(b)) == strconv.Itoa(newPid)
	})
	load.progress(t, 200)
	load.finish(t)
	if newPid == oldPid || !alive(newPid) {
		t.Fatalf("new master %d not running", newPid)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET from the new master: %d %v", code, err)
	}
	if n := len(children(newPid)); n != 2 {
		t.Fatalf("new master has %d workers, want 2", n)
	}
}

func TestUSR2FailedUpgradeKeepsServing(t *testing.T) {
	s := start(t, opts{workers: 1})
	// Break the configuration: the new master refuses to start, the old one
	// stays.
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nnonsense = true\n")
	s.signal(syscall.SIGUSR2)
	s.waitLog(`binary upgrade failed; the old master keeps serving`, 20*time.Second)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after a failed upgrade: %d %v", code, err)
	}
}

func TestPrivilegeDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	s := start(t, opts{workers: 2, extra: `user = "nobody"`})
	for _, pid := range s.workers() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		st := string(b)
		uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)`).FindStringSubmatch(st)
		if uid == nil || uid[1] != nobody.Uid || uid[2] != nobody.Uid || uid[3] != nobody.Uid {
			t.Fatalf("worker %d uids %v, want nobody (%s)", pid, uid, nobody.Uid)
		}
		groups := regexp.MustCompile(`(?m)^Groups:[ \t]*(.*)$`).FindStringSubmatch(st)
		if groups == nil || strings.TrimSpace(groups[1]) != "" {
			t.Fatalf("worker %d supplementary groups %q, want none", pid, groups)
		}
	}
	if os.Geteuid() == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
		if !regexp.MustCompile(`(?m)^Uid:\s+0\s`).Match(b) {
			t.Fatal("master lost root")
		}
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
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

func TestControlCLI(t *testing.T) {
	s := start(t, opts{workers: 2})
	out, code := runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, strconv.Itoa(s.cmd.Process.Pid)) {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
	for _, pid := range s.workers() {
		if !strings.Contains(out, strconv.Itoa(pid)) {
			t.Fatalf("status lacks worker %d:\n%s", pid, out)
		}
	}
	// Flags before the command work as well as after it.
	out, code = runCLI(t, "-c", s.cfg, "status", "-json")
	var resp struct {
		OK     bool
		Status struct {
			MasterPID int `json:"master_pid"`
			Workers   []struct {
				Slot  int
				PID   int
				State string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 0 || !resp.OK {
		t.Fatalf("status -json exit %d, %v:\n%s", code, err, out)
	}
	if resp.Status.MasterPID != s.cmd.Process.Pid || len(resp.Status.Workers) != 2 {
		t.Fatalf("status -json: %+v", resp)
	}
	if out, code = runCLI(t, "scale"); code != 2 {
		t.Fatalf("scale without a number: exit %d, want 2 (usage)\n%s", code, out)
	}
	if out, code = runCLI(t, "-c", s.cfg, "scale", "3"); code != 0 {
		t.Fatalf("scale: %d %s", code, out)
	}
	eventually(t, 10*time.Second, "3 workers", func() bool { return len(s.workers()) == 3 })
	if out, code = runCLI(t, "reload", "-c", s.cfg); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
	// A broken file: the command fails with file:line, the master keeps serving.
	good, _ := os.ReadFile(s.cfg)
	s.rewrite(string(good) + "\nworker_timeout = \"never\"\n")
	out, code = runCLI(t, "reload", "-c", s.cfg+".missing")
	if code != 1 {
		t.Fatalf("reload with a missing -c file: exit %d\n%s", code, out)
	}
	sock := strings.TrimSuffix(filepath.Join(s.dir, "forkd.pid"), ".pid") + ".sock"
	rr, err := controlCall(sock, "reload")
	if err != nil || rr.OK || !regexp.MustCompile(`config\.hcl:\d+`).MatchString(rr.Error) {
		t.Fatalf("reload of a broken config over the socket: %+v %v", rr, err)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET after a refused reload: %d %v", code, err)
	}
	s.rewrite(string(good))
	if out, code = runCLI(t, "stop", "-c", s.cfg); code != 0 {
		t.Fatalf("stop: %d %s", code, out)
	}
	if code := s.waitExit(15 * time.Second); code != 0 {
		t.Fatalf("master exit %d after stop", code)
	}
	out, code = runCLI(t, "status", "-c", s.cfg)
	if code != 1 || !strings.Contains(out, "no forkd master is running") {
		t.Fatalf("status with no master: exit %d:\n%s", code, out)
	}
}

func TestMetrics(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 2, extra: fmt.Sprintf(`metrics { address = "%s" }`, maddr)})
	for i := 0; i < 10; i++ {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
	}
	var body string
	eventually(t, 10*time.Second, "metrics to count the requests", func() bool {
		_, b, err := get(maddr, "/metrics")
		body = b
		m := regexp.MustCompile(`forkd_requests_total\{class="2xx"\} (\d+)`).FindStringSubmatch(b)
		if err != nil || m == nil {
			return false
		}
		n, _ := strconv.Atoi(m[1])
		return n >= 10
	})
	for _, want := range []string{"forkd_workers 2", "forkd_worker_rss_bytes{", "forkd_generation 1", "# TYPE forkd_requests_total counter"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// TestHUPUnderWrk reloads repeatedly while wrk drives load, over keep-alive
// connections and with a new connection per request; wrk must report no
// socket errors and no non-2xx responses. wrk runs with a duration far
// longer than the test needs and is stopped with SIGINT once the 20 reloads
// are done (wrk prints its summary on SIGINT), so a slow machine makes the
// test slower, never red.
func TestHUPUnderWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk not installed (Debian package wrk; .ci/run installs it)")
	}
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"keep-alive", nil},
		{"connection-close", []string{"-H", "Connection: close"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := start(t, opts{workers: 2})
			// A generous timeout: on a loaded CI machine wrk's 2 s default can
			// count a slow answer as an error; a lost request still shows.
			args := append([]string{"-t2", "-c64", "-d1h", "--timeout", "10s"}, mode.args...)
			w := startWrk(t, wrk, append(args, "http://"+s.addr+"/")...)
			// Reload only once the load is reaching the workers.
			eventually(t, 15*time.Second, "wrk's requests to reach the workers", func() bool {
				return servedRequests(t, s) > 0
			})
			for gen := 2; gen <= 21; gen++ {
				if w.exited() {
					t.Fatalf("wrk ended before the reloads were done:\n%s", w.out)
				}
				s.signal(syscall.SIGHUP)
				s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, gen), 15*time.Second)
			}
			out := w.stop(15 * time.Second)
			t.Logf("wrk:\n%s", out)
			if strings.Contains(out, "Socket errors") || strings.Contains(out, "Non-2xx") {
				t.Fatalf("wrk saw failures across reloads:\n%s", out)
			}
			m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out)
			if m == nil || m[1] == "0" {
				t.Fatalf("unexpected wrk output:\n%s", out)
			}
		})
	}
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

// TestWorkersInheritOnlyWhatIsPassed checks close-on-exec: a worker holds
// its listeners and its ipc socket, and none of the master's other sockets
// (control socket, metrics listener, other workers' ipc ends).
func TestWorkersInheritOnlyWhatIsPassed(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 3, extra: fmt.Sprintf("metrics {\n  address = \"%s\"\n}\n", maddr)})
	for _, pid := range s.workers() {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		var sockets []string
		distinct := map[string]bool{}
		for _, e := range ents {
			l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if strings.HasPrefix(l, "socket:") {
				sockets = append(sockets, e.Name()+"="+l)
				distinct[l] = true
			}
		}
		// One listener and one ipc socket. (The event loops' acceptor
		// holds a descriptor of its own for the listener: the same socket.)
		if len(distinct) != 2 {
			t.Errorf("worker %d holds %d sockets, want 2 (listener, ipc): %v", pid, len(distinct), sockets)
		}
	}
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
