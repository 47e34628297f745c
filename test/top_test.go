package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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
	load := startLoad(s.addr, 8)
	t.Cleanup(func() { // when the test fails before load.finish
		select {
		case <-load.stop:
		default:
			close(load.stop)
			load.wg.Wait()
		}
	})
	load.progress(t, 100)
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
	load.finish(t)

	// -n 2: two frames, each starting with its header.
	out, code := runCLI(t, "top", "-n", "2", "-interval", "100ms", "-c", s.cfg)
	if code != 0 || strings.Count(out, "forkd top  ") != 2 || !strings.Contains(out, "\n\nforkd top  ") {
		t.Fatalf("top -n 2 exit %d:\n%s", code, out)
	}
}

// startTop runs `forkd top` on the terminal tty, its screen read from ptm
// into the returned watcher, and returns the command with a channel closed
// when it has exited.
func startTop(t *testing.T, ptm, tty *os.File, cfg string) (*exec.Cmd, *logWatcher, chan struct{}) {
	t.Helper()
	screen := newLogWatcher()
	cmd := exec.Command(binary, "top", "-interval", "200ms", "-c", cfg)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	go io.Copy(screen, ptm) // ends when the test closes ptm
	return cmd, screen, exited
}

// canonical reports whether tty is in canonical (cooked) mode, as a shell
// leaves it; raw mode clears ICANON.
func canonical(t *testing.T, tty *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ICANON != 0
}

func waitScreen(t *testing.T, screen *logWatcher, pattern string) {
	t.Helper()
	if _, err := screen.wait(regexp.MustCompile(pattern), 15*time.Second); err != nil {
		t.Fatalf("screen: %q %v; screen so far:\n%q", pattern, err, screen.String())
	}
}

// waitExited waits for an exited channel, with a deadline.
func waitExited(t *testing.T, exited chan struct{}, what string) {
	t.Helper()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("forkd top did not exit within 10s after %s", what)
	}
}

// TestTopTerminal runs `forkd top` on a pseudo-terminal: it draws both
// workers in raw mode, s changes the sort, q quits and leaves the terminal
// as it found it; so does SIGTERM.
func TestTopTerminal(t *testing.T) {
	s := start(t, opts{workers: 2})
	ptm, tty := openPTY(t)
	resize(t, ptm, 40, 120)
	if !canonical(t, tty) {
		t.Fatal("a new terminal is not in canonical mode")
	}
	cmd, screen, exited := startTop(t, ptm, tty, s.cfg)
	waitScreen(t, screen, `sort: slot  \(s: next sort, q: quit\)`)
	for _, pid := range s.workers() {
		waitScreen(t, screen, `^\d+ +`+strconv.Itoa(pid)+` +1 `)
	}
	if canonical(t, tty) {
		t.Error("forkd top runs with the terminal in canonical mode, not raw")
	}
	ptm.Write([]byte("s"))
	waitScreen(t, screen, `sort: rps  `)
	ptm.Write([]byte("q"))
	waitExited(t, exited, "q")
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after q, want 0", code)
	}
	// The last bytes may still be on their way through the terminal.
	eventually(t, 5*time.Second, "forkd top to leave the alternate screen and show the cursor", func() bool {
		return strings.HasSuffix(screen.String(), "\x1b[?25h\x1b[?1049l")
	})
	if !canonical(t, tty) {
		t.Error("the terminal is left in raw mode after q")
	}

	cmd, screen, exited = startTop(t, ptm, tty, s.cfg)
	waitScreen(t, screen, `sort: slot`)
	cmd.Process.Signal(syscall.SIGTERM)
	waitExited(t, exited, "SIGTERM")
	if !canonical(t, tty) {
		t.Error("the terminal is left in raw mode after SIGTERM")
	}
}

// TestTopShowsDrainingGeneration: after a reload, a worker of the old
// generation that still serves a request is listed as draining under the
// new generation's workers.
func TestTopShowsDrainingGeneration(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "late\n")
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	s := start(t, opts{workers: 1, sites: proxySites(map[string]string{"/slow": fmt.Sprintf("%q", ln.Addr().String())}, "")})
	old := s.workers()
	got := make(chan error, 1)
	go func() {
		code, _, err := get(s.addr, "/slow")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		got <- err
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request did not reach the upstream within 20s")
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 30*time.Second)
	out, code := runCLI(t, "top", "-n", "1", "-interval", "100ms", "-c", s.cfg)
	close(release)
	if code != 0 {
		t.Fatalf("top exit %d:\n%s", code, out)
	}
	row := regexp.MustCompile(`(?m)^\d+ +` + strconv.Itoa(old[0]) + ` +1 .* draining$`)
	if !strings.Contains(out, "generation 2") || !strings.Contains(out, "draining (older generations):") || !row.MatchString(out) {
		t.Errorf("frame does not show worker %d of generation 1 draining:\n%s", old[0], out)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("the request the old worker drained: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the drained request did not finish within 20s")
	}
}

// TestTopShowsUpstreamsDown: an upstream that refuses connections is held
// down by the workers that tried it (max_fails = 1); their heartbeats say
// so, and `forkd status` (text and -json) and `forkd top` show it, with how
// many workers hold it down.
func TestTopShowsUpstreamsDown(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	s := start(t, opts{workers: 2, sites: fmt.Sprintf(`site "s" {
  route "/" {
    proxy {
      upstreams    = [%q]
      max_fails    = 1
      fail_timeout = "10m"
    }
  }
}
`, dead)})
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Each request reaches one worker: send until a heartbeat carries
		// the mark (heartbeats are a second apart).
		if resp, err := http.Get("http://" + s.addr + "/"); err == nil {
			resp.Body.Close()
		}
		st := status(t, s.cfg)
		if len(st.Status.Upstreams) == 1 {
			u := st.Status.Upstreams[0]
			if u.Address != dead || u.DownIn < 1 || u.Of != 2 {
				t.Fatalf("upstreams %+v", st.Status.Upstreams)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no upstream down in the status within 30s: %+v", st.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, code := runCLI(t, "status", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, "UPSTREAM") || !strings.Contains(out, dead) {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "top", "-n", "1", "-interval", "300ms", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, "upstreams") || !strings.Contains(out, dead) {
		t.Fatalf("top exit %d:\n%s", code, out)
	}
}
