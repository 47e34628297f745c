package forkd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
)

// TestBuiltinConfigListens: with no file and no test hook, the built-in
// configuration listens on config.DefaultAddress.
func TestBuiltinConfigListens(t *testing.T) {
	t.Setenv(testAddressEnv, "")
	cfg, err := builtinConfig(&options{defaultConfig: config.Default})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 1 || cfg.Listen[0].Address != "127.0.0.1:8080" || cfg.Path != "" {
		t.Fatalf("built-in listeners %+v, path %q", cfg.Listen, cfg.Path)
	}
}

// TestConfigFileOnlyWhenAsked: an embedding program ignores a config.hcl in
// its working directory; WithConfigFile (the daemon) reads it.
func TestConfigFileOnlyWhenAsked(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile(config.DefaultFile, []byte("workers = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(&options{defaultConfig: config.Default}, "", true)
	if err != nil || cfg.Path != "" {
		t.Fatalf("embedder: config %v, err %v; want the built-in configuration", cfg, err)
	}
	cfg, err = loadConfig(&options{defaultConfig: config.Default, configFile: config.DefaultFile}, "", true)
	if err != nil || cfg.Workers != 3 {
		t.Fatalf("daemon: config %+v, err %v; want ./config.hcl", cfg, err)
	}
}

// TestCommandLineUsage: flags go before or after a control command; a
// command line forkd cannot parse exits 2.
func TestCommandLineUsage(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stderr := os.Stderr
	os.Stderr = devnull
	defer func() { os.Stderr = stderr }()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"bogus"}, exitUsage},
		{[]string{"scale"}, exitUsage},
		{[]string{"scale", "zero"}, exitUsage},
		{[]string{"-nope"}, exitUsage},
		{[]string{"status", "extra"}, exitUsage},
		// No control socket in the built-in configuration: a failure, not
		// a usage error, whichever side of the command the flag is on.
		{[]string{"-json", "status"}, 1},
		{[]string{"status", "-json"}, 1},
		{[]string{"top", "-json"}, exitUsage},
		{[]string{"top", "-interval", "10ms"}, exitUsage},
		{[]string{"top", "-n", "-1"}, exitUsage},
		{[]string{"status", "-interval", "1s"}, exitUsage},
		{[]string{"-n", "1", "reload"}, exitUsage},
	} {
		if got := runCommand(&options{name: "forkd", defaultConfig: config.Default, args: c.args}); got != c.want {
			t.Errorf("forkd %v: exit %d, want %d", c.args, got, c.want)
		}
	}
}

// runCapture runs the command line args and returns its exit code, stdout
// and stderr.
func runCapture(t *testing.T, o options, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	o.name, o.args, o.stdout, o.stderr = "forkd", args, &stdout, &stderr
	if o.defaultConfig == nil {
		o.defaultConfig = config.Default
	}
	code := runCommand(&o)
	return code, stdout.String(), stderr.String()
}

// TestHelpAndVersion: `forkd help` and `forkd -h` say what each command
// does, one line each; `forkd version` and -version print the build.
func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCapture(t, options{}, "help")
	if code != 0 {
		t.Fatalf("forkd help: exit %d", code)
	}
	_, _, hflag := runCapture(t, options{}, "-h")
	for _, text := range []string{out, hflag} {
		for _, cmd := range []string{"status", "reload", "stop", "scale N", "version", "help"} {
			if !regexp.MustCompile(`(?m)^  ` + cmd + ` +\S.{10,}$`).MatchString(text) {
				t.Errorf("help has no line saying what %q does:\n%s", cmd, text)
			}
		}
		if !strings.Contains(text, "-s socket") {
			t.Errorf("help lacks the -s flag:\n%s", text)
		}
	}
	for _, args := range [][]string{{"version"}, {"-version"}} {
		code, out, errs := runCapture(t, options{}, args...)
		if code != 0 || !strings.HasPrefix(out, "forkd "+Version+"\n") || !strings.Contains(out, "\tgo\tgo1.") {
			t.Errorf("forkd %v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

// TestScaleOutOfRange: a count the master would refuse is a usage error,
// named once ("forkd scale: ...", not "forkd scale: scale: ...").
func TestScaleOutOfRange(t *testing.T) {
	code, _, errs := runCapture(t, options{}, "scale", "5000")
	if code != exitUsage || strings.Count(errs, "scale:") != 1 || !strings.Contains(errs, "1 to 1024") {
		t.Fatalf("forkd scale 5000: exit %d, stderr %q", code, errs)
	}
}

// TestControlTimeouts: reload waits for the new workers as long as the
// master does (their worker_timeout), stop for drain_delay and
// graceful_timeout, not a fixed 5 s.
func TestControlTimeouts(t *testing.T) {
	cfg := config.Default()
	cfg.WorkerTimeout = 7 * time.Minute
	cfg.GracefulTimeout = 2 * time.Minute
	cfg.DrainDelay = time.Minute
	if got := callTimeout(cfg, "reload"); got <= cfg.WorkerTimeout {
		t.Errorf("reload waits %v, want more than worker_timeout %v", got, cfg.WorkerTimeout)
	}
	if got := stopTimeout(cfg); got <= cfg.DrainDelay+cfg.GracefulTimeout {
		t.Errorf("stop waits %v, want more than drain_delay + graceful_timeout", got)
	}
	if got := callTimeout(cfg, "status"); got < 5*time.Second {
		t.Errorf("status waits %v", got)
	}
}

// TestControlSocketOfABrokenConfig: the control commands find the socket
// of a file the loader refuses, and say so; -s names one directly.
func TestControlSocketOfABrokenConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.hcl")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "forkd.sock")
	for _, tt := range []struct{ name, src, warn string }{
		{"valid", "pidfile = \"forkd.pid\"\n", ""},
		{"invalid value", "pidfile = \"forkd.pid\"\nworkers = \"many\"\n", "the configuration is invalid; using its control socket " + sock},
		{"broken syntax", "pidfile = \"forkd.pid\"\nsite \"x\" {\n", "the configuration does not parse; using its control socket " + sock},
	} {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.src)
			var stderr strings.Builder
			o := &options{name: "forkd", defaultConfig: config.Default, stderr: &stderr}
			_, got, err := controlConfig(o, "status", path, "")
			if err != nil || got != sock {
				t.Fatalf("socket %q, %v; want %s", got, err, sock)
			}
			if tt.warn == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tt.warn) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.warn)
			}
			if tt.warn != "" && !strings.Contains(stderr.String(), path+":2:") {
				t.Errorf("stderr %q does not say what is wrong (file:line)", stderr.String())
			}
			stderr.Reset()
			if _, got, err := controlConfig(o, "status", path, "/elsewhere.sock"); err != nil || got != "/elsewhere.sock" {
				t.Errorf("-s: socket %q, %v", got, err)
			}
		})
	}
	// Nothing that parses names a socket: say how to name one.
	write("site \"x\" {\npidfile = \"forkd.pid\"\n")
	var stderr strings.Builder
	o := &options{name: "forkd", defaultConfig: config.Default, stderr: &stderr}
	if _, _, err := controlConfig(o, "status", path, ""); err == nil || !strings.Contains(err.Error(), "-s SOCKET") {
		t.Fatalf("no socket found: %v", err)
	}
	// An unreadable file: -s still reaches the master.
	if _, got, err := controlConfig(o, "status", filepath.Join(dir, "missing.hcl"), sock); err != nil || got != sock {
		t.Errorf("-s with a missing file: socket %q, %v", got, err)
	}
	if _, _, err := controlConfig(o, "status", filepath.Join(dir, "missing.hcl"), ""); err == nil {
		t.Error("a missing file without -s was accepted")
	}
	if code, _, errs := runCapture(t, options{}, "-s", sock, "-t"); code != exitUsage {
		t.Errorf("-s with -t: exit %d, %s", code, errs)
	}
}

// TestWaitStopped: stop waits until its master is gone: no one answers on
// the socket, or another master (a USR2 successor) does.
func TestWaitStopped(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "forkd.sock")
	if err := waitStopped(sock, 42, time.Second); err != nil {
		t.Fatalf("no master: %v", err)
	}
	srv, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(func(control.Request) control.Response {
		return control.Response{OK: true, Status: &control.Status{MasterPID: 43}}
	})
	if err := waitStopped(sock, 43, 300*time.Millisecond); err == nil {
		t.Fatal("the master still answers, yet stop did not wait")
	}
	if err := waitStopped(sock, 42, time.Second); err != nil {
		t.Fatalf("a successor answers: %v", err)
	}
}

// TestTopNoMaster: `forkd top -n 1` with no master on the socket fails with
// a clear error instead of waiting.
func TestTopNoMaster(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, stdout, stderr := runCapture(t, options{}, "top", "-n", "1", "-interval", "100ms", "-s", sock)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "master not reachable: no forkd master is running") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
