package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer listens in a temporary directory and serves handler until the
// test ends.
func startServer(t *testing.T, handler func(Request) Response) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "forkd.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(handler) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func sampleStatus() *Status {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Status{
		MasterPID:  100,
		Started:    start,
		Generation: 2,
		Config:     "/etc/forkd/config.hcl",
		Workers: []WorkerStatus{
			{Slot: 0, PID: 101, Generation: 2, Started: start.Add(time.Hour), Requests: 123456, OpenConns: 12, RSS: 10276044, State: "ready"},
			{Slot: 1, PID: 102, Generation: 2, Started: start.Add(2 * time.Hour), Requests: 7, OpenConns: 0, RSS: 900, State: "booting"},
		},
	}
}

func TestCallRoundTrip(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []Request
	)
	s := startServer(t, func(r Request) Response {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		switch r.Cmd {
		case CmdStatus:
			return Response{OK: true, Status: sampleStatus()}
		case CmdReload:
			return Response{Error: "reload already in progress"}
		default:
			return Response{OK: true}
		}
	})

	resp, err := Call(s.Path(), Request{Cmd: CmdStatus}, 0)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !resp.OK || resp.Status == nil || len(resp.Status.Workers) != 2 {
		t.Fatalf("status response = %+v", resp)
	}
	want, _ := json.Marshal(sampleStatus())
	got, _ := json.Marshal(resp.Status)
	if !bytes.Equal(got, want) {
		t.Errorf("status round trip:\n got %s\nwant %s", got, want)
	}

	resp, err = Call(s.Path(), Request{Cmd: CmdScale, N: 4}, time.Minute)
	if err != nil || resp.Err() != nil {
		t.Fatalf("scale: %+v, %v", resp, err)
	}

	resp, err = Call(s.Path(), Request{Cmd: CmdReload}, 0)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if resp.OK || resp.Err() == nil || resp.Err().Error() != "reload already in progress" {
		t.Errorf("reload response = %+v, want the handler's refusal", resp)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[1] != (Request{Cmd: CmdScale, N: 4}) {
		t.Errorf("handler saw %+v", seen)
	}
}

func TestInvalidRequests(t *testing.T) {
	s := startServer(t, func(r Request) Response {
		t.Errorf("handler called with invalid request %+v", r)
		return Response{OK: true}
	})
	for _, req := range []Request{{Cmd: "explode"}, {}, {Cmd: CmdScale}, {Cmd: CmdScale, N: -1}, {Cmd: CmdScale, N: 1 << 20}} {
		resp, err := Call(s.Path(), req, 0)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		if resp.OK || resp.Error == "" {
			t.Errorf("%+v: response %+v, want an error", req, resp)
		}
		// The command line prints "forkd scale: " before the error.
		if strings.HasPrefix(resp.Error, req.Cmd+":") {
			t.Errorf("%+v: error %q repeats the command's name", req, resp.Error)
		}
	}

	// Raw garbage, and a line longer than any request.
	for _, raw := range []string{"not json\n", `{"cmd":` + "\n", strings.Repeat("x", 10000) + "\n"} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(raw))
		var resp Response
		err = json.NewDecoder(c).Decode(&resp)
		c.Close()
		if err != nil || resp.OK || resp.Error == "" {
			t.Errorf("raw %.20q: response %+v, %v; want an error response", raw, resp, err)
		}
	}
}

func TestNoMaster(t *testing.T) {
	dir := t.TempDir()

	// No file at all.
	missing := filepath.Join(dir, "missing.sock")
	_, err := Call(missing, Request{Cmd: CmdStatus}, 0)
	if !errors.Is(err, ErrNoMaster) {
		t.Fatalf("Call(missing) = %v, want ErrNoMaster", err)
	}
	if want := "no forkd master is running (control socket " + missing + ")"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	// A stale socket file nobody listens on.
	stale := staleSocket(t, filepath.Join(dir, "stale.sock"))
	if _, err := Call(stale, Request{Cmd: CmdStatus}, 0); !errors.Is(err, ErrNoMaster) {
		t.Errorf("Call(stale) = %v, want ErrNoMaster", err)
	}
}

// staleSocket leaves a socket file at path with no listener behind it, as a
// master killed with SIGKILL does.
func staleSocket(t *testing.T, path string) string {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	return path
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := staleSocket(t, filepath.Join(t.TempDir(), "forkd.sock"))
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want socket with 0600", fi.Mode())
	}
}

func TestListenRefusesLiveMaster(t *testing.T) {
	s := startServer(t, func(Request) Response { return Response{OK: true} })
	_, err := Listen(s.Path())
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen = %v, want ErrInUse", err)
	}
	// The first master is unharmed.
	if resp, err := Call(s.Path(), Request{Cmd: CmdStatus}, 0); err != nil || !resp.OK {
		t.Errorf("first master after refused Listen: %+v, %v", resp, err)
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(path, []byte("workers = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil {
		t.Fatal("Listen over a regular file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "workers = 2\n" {
		t.Errorf("regular file damaged: %q, %v", b, err)
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "forkd.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(func(Request) Response { return Response{OK: true} }) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestHandOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "forkd.sock")
	old, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := old.File()
	if err != nil {
		t.Fatal(err)
	}
	succ, err := FromFile(f, path)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The old master exits; the socket file must survive for the successor.
	old.Close()
	done := make(chan error, 1)
	go func() { done <- succ.Serve(func(Request) Response { return Response{OK: true, Error: "successor"} }) }()
	resp, err := Call(path, Request{Cmd: CmdStatus}, 0)
	if err != nil || resp.Error != "successor" {
		t.Errorf("call after hand-over: %+v, %v", resp, err)
	}
	succ.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("successor's Close left the socket file: %v", err)
	}
}

func TestFormatStatus(t *testing.T) {
	s := sampleStatus()
	now := s.Started.Add(26*time.Hour + 3*time.Minute)
	s.Workers[1].Started = now.Add(-(3*time.Minute + 12*time.Second))
	var b strings.Builder
	if err := FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	want := `master pid:  100
uptime:      1d02h
generation:  2
config:      /etc/forkd/config.hcl
workers:     2

SLOT  PID  GEN  AGE    REQUESTS  CONNS  RSS     STATE
0     101  2    1d01h  123456    12     9.8MiB  ready
1     102  2    3m12s  7         0      900B    booting
`
	if b.String() != want {
		t.Errorf("FormatStatus:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestFormatAgeAndBytes(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ages := map[time.Duration]string{
		0: "0s", 999 * time.Millisecond: "0s", 42 * time.Second: "42s",
		3*time.Minute + 5*time.Second: "3m05s", 5*time.Hour + 7*time.Minute: "5h07m",
		50 * time.Hour: "2d02h",
	}
	for d, want := range ages {
		if got := FormatAge(now.Add(-d), now); got != want {
			t.Errorf("FormatAge(%v) = %q, want %q", d, got, want)
		}
	}
	if got := FormatAge(time.Time{}, now); got != "-" {
		t.Errorf("FormatAge(zero) = %q", got)
	}
	sizes := map[uint64]string{
		0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB",
		10276044: "9.8MiB", 3 << 30: "3.0GiB", 1 << 62: "4.0EiB",
	}
	for n, want := range sizes {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFormatStatusDraining(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for state, want := range map[string]string{
		StateDraining: "state:       draining (health routes answer 503; listeners close in 1.5s)\n",
		StateStopping: "state:       stopping\n",
		StateRunning:  "state:       running\n",
	} {
		var b strings.Builder
		s := &Status{MasterPID: 1, Started: now, State: state, DrainEnds: now.Add(1500 * time.Millisecond)}
		if err := FormatStatus(&b, s, now); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s:\n%s\nwant a line %q", state, b.String(), want)
		}
	}
}

// TestCallStatusRaw: CallStatus decodes the status and also hands back the
// status object as sent, fields this side has no type for included.
func TestCallStatusRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answers := []string{
		`{"ok":true,"status":{"master_pid":5,"generation":2,"workers":[{"slot":0,"pid":6,"requests":9,"beat":"2026-12-05T14:00:00Z"}],"zones":[{"name":"api"}]}}`,
		`{"ok":false,"error":"master busy"}`,
	}
	go func() {
		for _, a := range answers {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadBytes('\n')
			io.WriteString(c, a+"\n")
			c.Close()
		}
	}()
	resp, raw, err := CallStatus(path, 0)
	if err != nil || !resp.OK || resp.Status == nil {
		t.Fatalf("CallStatus: %+v, %v", resp, err)
	}
	if st := resp.Status; st.MasterPID != 5 || len(st.Workers) != 1 || st.Workers[0].Requests != 9 ||
		!st.Workers[0].Beat.Equal(time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)) {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(string(raw), `"zones":[{"name":"api"}]`) {
		t.Errorf("raw status %s lacks the zones", raw)
	}
	resp, raw, err = CallStatus(path, 0)
	if err != nil || resp.OK || resp.Error != "master busy" || resp.Status != nil || raw != nil {
		t.Errorf("refusal: %+v, raw %s, %v", resp, raw, err)
	}
}
