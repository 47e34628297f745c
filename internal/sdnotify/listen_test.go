package sdnotify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// raceNoExitSleep spares each helper child the race detector's default
// one-second pause at exit, keeping any other GORACE options.
var raceNoExitSleep = "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")

// helperReport is what the helper child prints, as one JSON line, about the
// sockets it took with ListenFDs.
type helperReport struct {
	Err      string
	Names    []string
	Addrs    []string
	CloExec  []bool
	EnvLeft  []string
	Greeting string
}

// TestHelperProcess is not a real test: it is the child that the tests below
// start with inherited sockets. It takes them with ListenFDs, reports what it
// found, greets one connection on the first socket, and exits.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	// With exec.Cmd the parent cannot know the child's pid before it exists,
	// so the child fills in LISTEN_PID itself, as systemd would after fork.
	if os.Getenv("FORKD_HELPER_SET_LISTEN_PID") == "1" {
		os.Setenv(EnvListenPID, fmt.Sprint(os.Getpid()))
	}
	var rep helperReport
	files, err := ListenFDs()
	if err != nil {
		rep.Err = err.Error()
	}
	for _, k := range []string{EnvListenPID, EnvListenFDs, EnvListenNames} {
		if _, ok := os.LookupEnv(k); ok {
			rep.EnvLeft = append(rep.EnvLeft, k)
		}
	}
	for _, f := range files {
		rep.Names = append(rep.Names, f.Name())
		addr, err := SocketAddr(f)
		if err != nil {
			addr = "error: " + err.Error()
		}
		rep.Addrs = append(rep.Addrs, addr)
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		rep.CloExec = append(rep.CloExec, err == nil && flags&unix.FD_CLOEXEC != 0)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		os.Exit(2)
	}
	if len(files) > 0 {
		l, err := net.FileListener(files[0])
		if err != nil {
			os.Exit(3)
		}
		c, err := l.Accept()
		if err != nil {
			os.Exit(4)
		}
		fmt.Fprintf(c, "hello from %s\n", files[0].Name())
		c.Close()
	}
	os.Exit(0)
}

// readReport reads the helper's JSON report from its stdout.
func readReport(t *testing.T, r *bufio.Reader) helperReport {
	t.Helper()
	line, err := r.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read helper report: %v (got %q)", err, line)
	}
	var rep helperReport
	if err := json.Unmarshal(line, &rep); err != nil {
		t.Fatalf("decode helper report %q: %v", line, err)
	}
	return rep
}

// greet dials the helper's first socket and returns its greeting, or the
// error text. It may run outside the test goroutine, so it does not fail t.
func greet(network, addr string) string {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return fmt.Sprintf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Sprintf("read greeting: %v", err)
	}
	return line
}

func fileOf(t *testing.T, l net.Listener) *os.File {
	t.Helper()
	f, err := l.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestListenFDsInherited(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(),
		"GO_WANT_HELPER_PROCESS=1",
		raceNoExitSleep,
		"FORKD_HELPER_SET_LISTEN_PID=1",
		"LISTEN_FDS=2",
		"LISTEN_FDNAMES=http:admin",
	)
	cmd.ExtraFiles = []*os.File{fileOf(t, tcp), fileOf(t, ul)}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	rep := readReport(t, bufio.NewReader(out))
	if rep.Err != "" {
		t.Fatalf("ListenFDs: %s", rep.Err)
	}
	if want := []string{"http", "admin"}; !slices.Equal(rep.Names, want) {
		t.Errorf("names = %q, want %q", rep.Names, want)
	}
	if want := []string{tcp.Addr().String(), "unix:" + sock}; !slices.Equal(rep.Addrs, want) {
		t.Errorf("addrs = %q, want %q", rep.Addrs, want)
	}
	if !slices.Equal(rep.CloExec, []bool{true, true}) {
		t.Errorf("close-on-exec = %v, want all true", rep.CloExec)
	}
	if len(rep.EnvLeft) != 0 {
		t.Errorf("variables left set: %q", rep.EnvLeft)
	}
	// The socket works in the child: our connection is accepted there.
	if got := greet("tcp", tcp.Addr().String()); got != "hello from http\n" {
		t.Errorf("greeting = %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

func TestListenFDsOtherPID(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(),
		"GO_WANT_HELPER_PROCESS=1",
		raceNoExitSleep,
		"LISTEN_PID=1", // the sockets were meant for someone else
		"LISTEN_FDS=1",
	)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var rep helperReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if rep.Err != "" || len(rep.Names) != 0 || len(rep.EnvLeft) != 0 {
		t.Errorf("report = %+v, want no files, no error, variables unset", rep)
	}
}

func TestListenFDsNotActivated(t *testing.T) {
	t.Setenv(EnvListenPID, "")
	os.Unsetenv(EnvListenPID)
	files, err := ListenFDs()
	if err != nil || len(files) != 0 {
		t.Errorf("ListenFDs() = %v, %v; want none, nil", files, err)
	}
}

func TestListenFDsInvalid(t *testing.T) {
	pid := fmt.Sprint(os.Getpid())
	for _, env := range [][2]string{{"junk", "1"}, {pid, "junk"}, {pid, "-1"}} {
		t.Setenv(EnvListenPID, env[0])
		t.Setenv(EnvListenFDs, env[1])
		if files, err := ListenFDs(); err == nil {
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q: got %v, want an error", env[0], env[1], files)
		}
	}
}

// TestSystemdSocketActivate checks the real protocol: systemd-socket-activate
// binds the socket, sets LISTEN_PID to its own pid and execs the helper.
func TestSystemdSocketActivate(t *testing.T) {
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate not installed (Debian package systemd; .ci/run installs it)")
	}
	sock := filepath.Join(t.TempDir(), "web.sock")
	cmd := exec.Command(bin, "-l", sock, "--fdname=web",
		"-E", "GO_WANT_HELPER_PROCESS=1", "-E", raceNoExitSleep,
		"--", os.Args[0], "-test.run=^TestHelperProcess$")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	// systemd-socket-activate says when it listens, and execs the child
	// only once a connection is waiting; keep the connection to be greeted.
	errs := bufio.NewReader(stderr)
	listening := regexp.MustCompile(`^Listening on .* as 3\.`)
	for {
		line, err := errs.ReadString('\n')
		if err != nil {
			t.Fatalf("systemd-socket-activate: %v", err)
		}
		if listening.MatchString(line) {
			break
		}
	}
	go io.Copy(io.Discard, errs)
	greeting := make(chan string, 1)
	go func() { greeting <- greet("unix", sock) }()

	rep := readReport(t, bufio.NewReader(stdout))
	if rep.Err != "" {
		t.Fatalf("ListenFDs: %s", rep.Err)
	}
	if !slices.Equal(rep.Names, []string{"web"}) || !slices.Equal(rep.Addrs, []string{"unix:" + sock}) {
		t.Errorf("report = %+v, want one socket web at unix:%s", rep, sock)
	}
	if !slices.Equal(rep.CloExec, []bool{true}) {
		t.Errorf("close-on-exec = %v, want [true]", rep.CloExec)
	}
	select {
	case got := <-greeting:
		if got != "hello from web\n" {
			t.Errorf("greeting = %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no greeting from the activated helper")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

func TestFormatSockaddr(t *testing.T) {
	cases := []struct {
		sa   unix.Sockaddr
		want string
	}{
		{&unix.SockaddrInet4{Port: 8080, Addr: [4]byte{127, 0, 0, 1}}, "127.0.0.1:8080"},
		{&unix.SockaddrInet4{Port: 80}, "0.0.0.0:80"},
		{&unix.SockaddrInet6{Port: 8080, Addr: [16]byte{15: 1}}, "[::1]:8080"},
		{&unix.SockaddrInet6{Port: 443}, "[::]:443"},
		{&unix.SockaddrUnix{Name: "/run/forkd/web.sock"}, "unix:/run/forkd/web.sock"},
		{&unix.SockaddrUnix{Name: "@forkd"}, "unix:@forkd"},
	}
	for _, tc := range cases {
		got, err := FormatSockaddr(tc.sa)
		if err != nil || got != tc.want {
			t.Errorf("FormatSockaddr(%+v) = %q, %v; want %q", tc.sa, got, err, tc.want)
		}
	}
	if _, err := FormatSockaddr(&unix.SockaddrNetlink{}); err == nil {
		t.Error("FormatSockaddr(netlink) returned no error")
	}
}

func TestSocketAddrIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l.Close()
	got, err := SocketAddr(fileOf(t, l))
	if err != nil || got != l.Addr().String() {
		t.Errorf("SocketAddr = %q, %v; want %q", got, err, l.Addr())
	}
}
