package forkd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/top"
	"github.com/forkd/forkd/ipc"
	"github.com/forkd/forkd/master"
)

func isWorker() bool { return ipc.IsWorker() }

func baseName(p string) string { return filepath.Base(p) }

// exitUsage is the exit code for a command line forkd cannot parse.
const exitUsage = 2

// usageExit is the exit code for an error from flag.FlagSet.Parse, which
// has already printed the problem and the usage.
func usageExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return exitUsage
}

// commandHelp lists forkd's commands, one line each, for the usage text.
const commandHelp = `commands:
  (none)     run the master: it starts the workers and supervises them
  status     show the running master's state, last reload and workers
  top        a live view of the master and its workers (requests per second, connections, RSS), refreshed every -interval; keys: s sort, q quit
  reload     reload the configuration (as HUP); waits until the new workers serve (applied) or the reload is refused
  stop       stop gracefully (as TERM); waits until the master has exited
  scale N    set the number of workers to N, from 1 to %d
  version    print the version, and the Go version, module and VCS revision the binary was built from
  help       print this help
`

// usage writes the command line's synopsis, its commands and flags to w.
func usage(w io.Writer, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage:\n  %[1]s [-c config.hcl]\n  %[1]s -t [-c config.hcl]\n  %[1]s status|reload|stop|scale N [-c config.hcl | -s socket] [-json]\n  %[1]s top [-c config.hcl | -s socket] [-interval 1s] [-n N]\n  %[1]s version|help\n\n", name)
	fmt.Fprintf(w, commandHelp, config.MaxWorkers)
	fmt.Fprint(w, "\nflags (before or after the command):\n")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
	fmt.Fprint(w, "\nexit codes: 0 ok, 1 bad configuration or failure, 2 bad command line, 3 no worker could boot\n")
}

// runCommand parses the command line and runs the master, the config check
// or a control command.
func runCommand(o *options) int {
	if o.stdout == nil {
		o.stdout = os.Stdout
	}
	if o.stderr == nil {
		o.stderr = os.Stderr
	}
	fs := flag.NewFlagSet(o.name, flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	cfgHelp := "configuration file (default: built-in defaults)"
	if o.configFile != "" {
		cfgHelp = fmt.Sprintf("configuration file (default ./%s if present, else built-in defaults)", o.configFile)
	}
	cfgPath := fs.String("c", "", cfgHelp)
	check := fs.Bool("t", false, "check the configuration and exit 0 (valid) or 1")
	sock := fs.String("s", "", "control commands: the master's control `socket` (default: the configuration's control_socket, or its pidfile with .sock)")
	version := fs.Bool("version", false, "print the version and exit (as the version command)")
	asJSON := fs.Bool("json", false, "control commands: print the master's answer as JSON")
	interval := fs.Duration("interval", time.Second, "top: the time between two frames")
	frames := fs.Int("n", 0, "top: print `N` frames as plain text and exit (0: until q or a signal)")
	fs.Usage = func() { usage(fs.Output(), o.name, fs) }
	// Flags may come before the command, after it, or both:
	// "forkd -c x.hcl status" and "forkd status -c x.hcl" are the same.
	if err := fs.Parse(o.args); err != nil {
		return usageExit(err)
	}
	rest := fs.Args()
	cmd := ""
	n := 0
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
		switch cmd {
		case control.CmdStatus, control.CmdReload, control.CmdStop, cmdTop, "help", "version":
		case control.CmdScale:
			if len(rest) == 0 {
				fmt.Fprintf(o.stderr, "%s scale: missing the number of workers\n", o.name)
				return exitUsage
			}
			v, err := strconv.Atoi(rest[0])
			if err != nil || v < 1 || v > config.MaxWorkers {
				fmt.Fprintf(o.stderr, "%s scale: %q is not a number of workers from 1 to %d\n", o.name, rest[0], config.MaxWorkers)
				return exitUsage
			}
			n, rest = v, rest[1:]
		default:
			fmt.Fprintf(o.stderr, "%s: unknown command %q\n", o.name, cmd)
			fs.Usage()
			return exitUsage
		}
		if err := fs.Parse(rest); err != nil {
			return usageExit(err)
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		fmt.Fprintf(o.stderr, "%s: unexpected argument %q\n", o.name, rest[0])
		return exitUsage
	}
	switch {
	case cmd == "help":
		usage(o.stdout, o.name, fs)
		return 0
	case cmd == "version" || *version:
		printVersion(o.stdout, o.name)
		return 0
	case *sock != "" && (cmd == "" || *check):
		fmt.Fprintf(o.stderr, "%s: -s names the control socket for status, top, reload, stop and scale\n", o.name)
		return exitUsage
	case cmd != cmdTop && (isSet(fs, "interval") || isSet(fs, "n")):
		fmt.Fprintf(o.stderr, "%s: -interval and -n are for top\n", o.name)
		return exitUsage
	case cmd == cmdTop && *asJSON:
		fmt.Fprintf(o.stderr, "%s top: -json is for status, reload, stop and scale; top's frames are text\n", o.name)
		return exitUsage
	case cmd == cmdTop && *interval < top.MinInterval:
		fmt.Fprintf(o.stderr, "%s top: -interval %v is below %v\n", o.name, *interval, top.MinInterval)
		return exitUsage
	case cmd == cmdTop && *frames < 0:
		fmt.Fprintf(o.stderr, "%s top: -n %d is negative\n", o.name, *frames)
		return exitUsage
	case cmd == cmdTop && !*check:
		return topCommand(o, *cfgPath, *sock, *interval, *frames)
	case cmd != "" && !*check:
		return controlCommand(o, *cfgPath, *sock, control.Request{Cmd: cmd, N: n}, *asJSON)
	}
	cfg, err := loadConfig(o, *cfgPath, !*check)
	if err != nil {
		fmt.Fprintf(o.stderr, "%s: %v\n", o.name, err)
		return 1
	}
	if *check {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(o.stderr, "%s: warning: %s\n", o.name, w)
		}
		src := cfg.Path
		if src == "" {
			src = "built-in defaults"
		}
		fmt.Fprintf(o.stdout, "%s: configuration %s is valid\n", o.name, src)
		return 0
	}
	path := cfg.Path
	// A reload re-reads the file the master started with, or rebuilds the
	// built-in configuration when it started without one.
	load := func() (*config.Config, error) {
		if path == "" {
			return builtinConfig(o)
		}
		return config.Load(path)
	}
	m, err := master.New(master.Options{Config: cfg, Load: load})
	if err != nil {
		fmt.Fprintf(o.stderr, "%s: %v\n", o.name, err)
		return 1
	}
	return m.Run()
}

// cmdTop is the live view; it is no control command of its own: it sends
// control.CmdStatus once per interval.
const cmdTop = "top"

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// topCommand runs `forkd top`: until q or SIGINT/SIGTERM on a terminal, or
// for n plain frames.
func topCommand(o *options, path, sock string, interval time.Duration, n int) int {
	_, sock, err := controlConfig(o, cmdTop, path, sock)
	if err != nil {
		fmt.Fprintf(o.stderr, "%s top: %v\n", o.name, err)
		return 1
	}
	// The signals end the view (and restore the terminal) instead of
	// killing the process in raw mode.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = top.Run(ctx, top.Options{Socket: sock, Interval: interval, Frames: n, Stdin: os.Stdin, Stdout: o.stdout})
	if err != nil {
		fmt.Fprintf(o.stderr, "%s top: %v\n", o.name, err)
		return 1
	}
	return 0
}

// loadConfig loads path for the master (start: config.Load) or for forkd -t
// (not start: config.Check, which only warns about a missing directory
// that systemd may make); with no path, the WithConfigFile file if there
// is one and it exists, else the built-in configuration.
func loadConfig(o *options, path string, start bool) (*config.Config, error) {
	path = configPath(o, path)
	if path == "" {
		return builtinConfig(o)
	}
	if !start {
		return config.Check(path)
	}
	return config.Load(path)
}

// configPath is the configuration file forkd reads: path from -c, else the
// WithConfigFile file if it exists, else "" (the built-in configuration).
func configPath(o *options, path string) string {
	if path == "" && o.configFile != "" {
		if _, err := os.Stat(o.configFile); err == nil {
			path = o.configFile
		}
	}
	return path
}

// builtinConfig is the configuration without a file. One built in code gets
// the same defaults and path resolution (against the working directory) as
// a file.
func builtinConfig(o *options) (*config.Config, error) {
	cfg := o.defaultConfig()
	cfg.SetDefaults()
	if a := os.Getenv(testAddressEnv); a != "" {
		for i := range cfg.Listen {
			if cfg.Listen[i].Address == config.DefaultAddress {
				cfg.Listen[i].Address = a
			}
		}
	}
	if wd, err := os.Getwd(); err == nil {
		cfg.Normalize(wd)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("built-in configuration: %w", err)
	}
	return cfg, nil
}

// testAddressEnv is a hook for forkd's own tests, not a setting: it moves
// the built-in configuration's listener off config.DefaultAddress, so that
// a test of the no-configuration start-up can pick a free port.
const testAddressEnv = "FORKD_TEST_DEFAULT_ADDRESS"

// printVersion prints forkd's version and, like "go version -m", the Go
// version, module and VCS revision the binary was built from.
func printVersion(w io.Writer, name string) {
	if name == "forkd" {
		fmt.Fprintf(w, "forkd %s\n", Version)
	} else {
		fmt.Fprintf(w, "%s (forkd %s)\n", name, Version)
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	fmt.Fprintf(w, "\tgo\t%s\n", bi.GoVersion)
	if bi.Path != "" {
		fmt.Fprintf(w, "\tpath\t%s\n", bi.Path)
	}
	if bi.Main.Path != "" {
		fmt.Fprintf(w, "\tmod\t%s\t%s\n", bi.Main.Path, bi.Main.Version)
	}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs") {
			fmt.Fprintf(w, "\tbuild\t%s=%s\n", s.Key, s.Value)
		}
	}
}

// answerMargin is what a control command allows beyond the master's own
// bound on the work it waits for: time to take the command (a busy master
// answers "master busy" after 5s) and to answer.
const answerMargin = control.DefaultTimeout

// callTimeout is how long a control command waits for the master's answer.
// A reload is answered once the new generation serves or is refused, which
// the new configuration's worker_timeout bounds: a new worker silent for
// that long is killed, and the reload refused.
func callTimeout(cfg *config.Config, cmd string) time.Duration {
	if cmd == control.CmdReload {
		return cfg.WorkerTimeout + answerMargin
	}
	return control.DefaultTimeout
}

// stopTimeout is how long `stop` waits for the master to exit: drain_delay,
// then graceful_timeout for the workers to finish (after which they are
// killed).
func stopTimeout(cfg *config.Config) time.Duration {
	return cfg.DrainDelay + cfg.GracefulTimeout + answerMargin
}

// controlConfig finds the control socket and the timeouts of the master a
// control command talks to. It needs only the socket: a file the loader
// refuses (the very moment an operator needs `forkd status` to see
// "last reload: FAILED") is read leniently (config.LoadLenient), and what
// was used is said on stderr. sock, from -s, overrides the file's socket.
func controlConfig(o *options, cmd, path, sock string) (*config.Config, string, error) {
	path = configPath(o, path)
	var cfg *config.Config
	if path == "" {
		c, err := builtinConfig(o)
		if err != nil {
			return nil, "", err
		}
		cfg = c
	} else if c, err := config.LoadControl(path); err == nil {
		cfg = c
	} else {
		lc, lerr := config.LoadLenient(path)
		switch {
		case lc == nil && sock == "":
			return nil, "", err
		case lc == nil:
			// Unreadable: -s still reaches the master, with the default
			// timeouts.
			fmt.Fprintf(o.stderr, "%s %s: warning: %v; using the control socket %s from -s\n", o.name, cmd, err, sock)
			return config.Default(), sock, nil
		}
		cfg = lc
		how := "is invalid"
		if lerr != nil {
			how = "does not parse"
		}
		switch {
		case sock != "":
			fmt.Fprintf(o.stderr, "%s %s: warning: %v\n%s %s: warning: the configuration %s; using the control socket %s from -s\n",
				o.name, cmd, err, o.name, cmd, how, sock)
		case lc.ControlSocketPath() == "":
			return nil, "", fmt.Errorf("%w\nthe configuration %s and names no control socket that can be read (there is no default); name it with -s SOCKET", err, how)
		default:
			fmt.Fprintf(o.stderr, "%s %s: warning: %v\n%s %s: warning: the configuration %s; using its control socket %s (-s SOCKET names another)\n",
				o.name, cmd, err, o.name, cmd, how, lc.ControlSocketPath())
		}
	}
	if sock == "" {
		sock = cfg.ControlSocketPath()
	}
	if sock == "" {
		return nil, "", errors.New("the configuration sets neither control_socket nor pidfile, so there is no control socket to reach the master (-s SOCKET names one)")
	}
	return cfg, sock, nil
}

// controlCommand sends one control command to the running master and
// prints its answer; stop then waits for the master to exit.
func controlCommand(o *options, path, sock string, req control.Request, asJSON bool) int {
	cfg, sock, err := controlConfig(o, req.Cmd, path, sock)
	if err != nil {
		fmt.Fprintf(o.stderr, "%s %s: %v\n", o.name, req.Cmd, err)
		return 1
	}
	timeout := callTimeout(cfg, req.Cmd)
	resp, err := control.Call(sock, req, timeout)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no answer within %v (control socket %s)", timeout, sock)
			if req.Cmd == control.CmdReload {
				err = fmt.Errorf("%w; the reload may still be in progress: see %s status", err, o.name)
			}
		}
		fmt.Fprintf(o.stderr, "%s %s: %v\n", o.name, req.Cmd, err)
		return 1
	}
	switch {
	case asJSON:
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp)
	case !resp.OK:
	case resp.Status != nil && req.Cmd == control.CmdStatus:
		control.FormatStatus(o.stdout, resp.Status, time.Now())
	default:
		printOK(o.stdout, req)
	}
	if !resp.OK {
		cause := resp.Error
		if req.Cmd == control.CmdReload {
			cause = "refused: " + cause
		}
		fmt.Fprintf(o.stderr, "%s %s: %s\n", o.name, req.Cmd, cause)
		return 1
	}
	if req.Cmd == control.CmdStop {
		pid := 0
		if resp.Status != nil {
			pid = resp.Status.MasterPID
		}
		if err := waitStopped(sock, pid, stopTimeout(cfg)); err != nil {
			fmt.Fprintf(o.stderr, "%s stop: %v\n", o.name, err)
			return 1
		}
		if !asJSON {
			fmt.Fprintln(o.stdout, "master stopped")
		}
	}
	return 0
}

// stopPoll is how often `stop` asks whether the master is still there.
const stopPoll = 100 * time.Millisecond

// waitStopped waits, for up to d, until the master with pid no longer
// answers on sock: its control socket goes when it exits, or a successor
// from a binary upgrade (a master with another pid) answers there.
func waitStopped(sock string, pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("the master is still stopping after %v (see graceful_timeout and drain_delay)", d)
		}
		resp, err := control.Call(sock, control.Request{Cmd: control.CmdStatus}, left)
		if errors.Is(err, control.ErrNoMaster) || (err == nil && resp.Status != nil && pid != 0 && resp.Status.MasterPID != pid) {
			return nil
		}
		time.Sleep(min(stopPoll, time.Until(deadline)))
	}
}

func printOK(w io.Writer, req control.Request) {
	switch req.Cmd {
	case control.CmdReload:
		fmt.Fprintln(w, "reload applied")
	case control.CmdStop:
		fmt.Fprintln(w, "graceful stop started; waiting for the master to exit")
	case control.CmdScale:
		fmt.Fprintf(w, "scaling to %d workers\n", req.N)
	}
}
