package forkd

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/ipc"
	"github.com/forkd/forkd/master"
)

func isWorker() bool { return ipc.IsWorker() }

func baseName(p string) string { return filepath.Base(p) }

// runCommand parses the command line and runs the master, the config check
// or a control command.
func runCommand(o *options) int {
	fs := flag.NewFlagSet(o.name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	cfgPath := fs.String("c", "", "configuration file (default ./config.hcl if present, else built-in defaults)")
	check := fs.Bool("t", false, "check the configuration and exit 0 (valid) or 1")
	version := fs.Bool("version", false, "print the version and exit")
	asJSON := fs.Bool("json", false, "control commands: print JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage:\n  %[1]s [-c config.hcl]\n  %[1]s -t [-c config.hcl]\n  %[1]s -version\n  %[1]s status|reload|stop|scale N [-c config.hcl] [-json]\n\nflags:\n", o.name)
		fs.PrintDefaults()
	}
	args := o.args
	cmd := ""
	n := 0
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
		switch cmd {
		case "status", "reload", "stop":
		case "scale":
			if len(args) == 0 {
				fmt.Fprintf(os.Stderr, "%s scale: missing the number of workers\n", o.name)
				return 2
			}
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 1 {
				fmt.Fprintf(os.Stderr, "%s scale: %q is not a number of workers >= 1\n", o.name, args[0])
				return 2
			}
			n, args = v, args[1:]
		default:
			fmt.Fprintf(os.Stderr, "%s: unknown command %q\n", o.name, cmd)
			fs.Usage()
			return 2
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", o.name, fs.Arg(0))
		return 2
	}
	if *version {
		fmt.Printf("%s %s (forkd %s)\n", o.name, Version, Version)
		return 0
	}
	cfg, err := loadConfig(o, *cfgPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", o.name, err)
		return 1
	}
	if *check {
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

// loadConfig loads path; with no path, ./config.hcl if present, else the
// built-in configuration.
func loadConfig(o *options, path string) (*config.Config, error) {
	if path == "" {
		if _, err := os.Stat(o.defaultPath); err == nil {
			path = o.defaultPath
		}
	}
	if path == "" {
		return builtinConfig(o)
	}
	return config.Load(path)
}

// builtinConfig is the configuration without a file. One built in code gets
// the same defaults and path resolution (against the working directory) as
// a file.
func builtinConfig(o *options) (*config.Config, error) {
	cfg := o.defaultConfig()
	cfg.SetDefaults()
	if wd, err := os.Getwd(); err == nil {
		cfg.Normalize(wd)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("built-in configuration: %w", err)
	}
	return cfg, nil
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
