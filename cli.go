package forkd

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
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

// runCommand parses the command line and runs the master, the config check
// or a control command.
func runCommand(o *options) int {
	fs := flag.NewFlagSet(o.name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	cfgHelp := "configuration file (default: built-in defaults)"
	if o.configFile != "" {
		cfgHelp = fmt.Sprintf("configuration file (default ./%s if present, else built-in defaults)", o.configFile)
	}
	cfgPath := fs.String("c", "", cfgHelp)
	check := fs.Bool("t", false, "check the configuration and exit 0 (valid) or 1")
	version := fs.Bool("version", false, "print the version and exit")
	asJSON := fs.Bool("json", false, "control commands: print JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage:\n  %[1]s [-c config.hcl]\n  %[1]s -t [-c config.hcl]\n  %[1]s -version\n  %[1]s status|reload|stop|scale N [-c config.hcl] [-json]   (flags before or after the command)\n\nexit codes: 0 ok, 1 bad configuration or failure, 2 bad command line, 3 no worker could boot\n\nflags:\n", o.name)
		fs.PrintDefaults()
	}
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
		case "status", "reload", "stop":
		case "scale":
			if len(rest) == 0 {
				fmt.Fprintf(os.Stderr, "%s scale: missing the number of workers\n", o.name)
				return exitUsage
			}
			v, err := strconv.Atoi(rest[0])
			if err != nil || v < 1 {
				fmt.Fprintf(os.Stderr, "%s scale: %q is not a number of workers >= 1\n", o.name, rest[0])
				return exitUsage
			}
			n, rest = v, rest[1:]
		default:
			fmt.Fprintf(os.Stderr, "%s: unknown command %q\n", o.name, cmd)
			fs.Usage()
			return exitUsage
		}
		if err := fs.Parse(rest); err != nil {
			return usageExit(err)
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", o.name, rest[0])
		return exitUsage
	}
	if *version {
		printVersion(os.Stdout, o.name)
		return 0
	}
	// A control command only needs the socket's path: it neither checks
	// this machine's files nor reads the TLS keys (which its user may not
	// be allowed to read).
	cfg, err := loadConfig(o, *cfgPath, cmd == "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", o.name, err)
		return 1
	}
	if *check {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(os.Stderr, "%s: warning: %s\n", o.name, w)
		}
		src := cfg.Path
		if src == "" {
			src = "built-in defaults"
		}
		fmt.Printf("%s: configuration %s is valid\n", o.name, src)
		return 0
	}
	if cmd != "" {
		return control1(o, cfg, cmd, n, *asJSON)
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
		fmt.Fprintf(os.Stderr, "%s: %v\n", o.name, err)
		return 1
	}
	return m.Run()
}

// loadConfig loads path (with host false, without the checks of this
// machine: config.LoadControl); with no path, the WithConfigFile file if there is
// one and it exists, else the built-in configuration.
func loadConfig(o *options, path string, host bool) (*config.Config, error) {
	if path == "" && o.configFile != "" {
		if _, err := os.Stat(o.configFile); err == nil {
			path = o.configFile
		}
	}
	if path == "" {
		return builtinConfig(o)
	}
	if !host {
		return config.LoadControl(path)
	}
	return config.Load(path)
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

// control1 sends one control command to the running master.
func control1(o *options, cfg *config.Config, cmd string, n int, asJSON bool) int {
	sock := cfg.ControlSocketPath()
	if sock == "" {
		fmt.Fprintf(os.Stderr, "%s %s: the configuration sets neither control_socket nor pidfile, so there is no control socket to reach the master\n", o.name, cmd)
		return 1
	}
	resp, err := control.Call(sock, control.Request{Cmd: cmd, N: n}, 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", o.name, cmd, err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp)
	} else if !resp.OK {
		// printed below
	} else if resp.Status != nil {
		control.FormatStatus(os.Stdout, resp.Status, time.Now())
	} else {
		printOK(os.Stdout, cmd, n)
	}
	if !resp.OK {
		fmt.Fprintf(os.Stderr, "%s %s: %s\n", o.name, cmd, resp.Error)
		return 1
	}
	return 0
}

func printOK(w io.Writer, cmd string, n int) {
	switch cmd {
	case "reload":
		fmt.Fprintln(w, "reload started")
	case "stop":
		fmt.Fprintln(w, "graceful stop started")
	case "scale":
		fmt.Fprintf(w, "scaling to %d workers\n", n)
	}
}
