package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostChecks checks what Parse finds on the machine: static roots, log
// directories, users and groups. Each problem is one diagnostic at the
// line and column of the value.
func TestHostChecks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"www", "logs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	static := func(root string) string {
		return fmt.Sprintf("site \"s\" {\n  route \"/\" {\n    static {\n      root = %q\n    }\n  }\n}\n", root)
	}
	tests := []struct {
		name string
		src  string
		pos  string // "line:col" of the problem; "" = valid
		want string
	}{
		{"root", static(filepath.Join(dir, "www")), "", ""},
		{"relative root", static("www"), "", ""},
		{"root missing", static(filepath.Join(dir, "nope")), "4:14", "Invalid static root; The directory"},
		{"relative root missing", static("./nope"), "4:14", filepath.Join(dir, "nope") + `" does not exist.`},
		{"root is a file", static(file), "4:14", `Invalid static root; "` + file + `" is not a directory.`},
		{"root under a file", static(filepath.Join(file, "www")), "4:14", "does not exist"},

		{"log files", "log {\n  file = \"logs/forkd.log\"\n  access = \"a.log\"\n}\n", "", ""},
		{"log stderr", "log {\n  file = \"-\"\n  access = \"-\"\n}\n", "", ""},
		{"log dir missing", "log {\n  file = \"/nonexistent-dir/x.log\"\n}\n", "2:10", `Invalid log file; The directory "/nonexistent-dir" does not exist; forkd creates the log file but not its directory.`},
		{"access dir missing", "log {\n  level = \"info\"\n  access = \"/nonexistent-dir/a.log\"\n}\n", "3:12", `Invalid access log; The directory "/nonexistent-dir" does not exist`},
		{"relative log dir missing", "log {\n  file = \"nope/x.log\"\n}\n", "2:10", filepath.Join(dir, "nope")},
		{"log file is a directory", "log {\n  access = \"logs\"\n}\n", "2:12", "is a directory, not a file"},
		{"log dir is a file", "log {\n  file = \"a-file/x.log\"\n}\n", "2:10", "is not a directory"},

		// The master creates its pidfile and sockets, not their directories.
		{"pidfile", "pidfile = \"logs/forkd.pid\"\n", "", ""},
		{"pidfile dir missing", "workers = 1\npidfile = \"/nonexistent-dir/forkd.pid\"\n", "2:11", `Invalid pidfile; The directory "/nonexistent-dir" does not exist; forkd creates "forkd.pid" but not its directory.`},
		{"relative pidfile dir missing", "pidfile = \"run/forkd.pid\"\n", "1:11", filepath.Join(dir, "run")},
		{"pidfile dir is a file", "pidfile = \"a-file/forkd.pid\"\n", "1:11", `Invalid pidfile; "` + file + `", which should hold "forkd.pid", is not a directory.`},
		{"control socket dir missing", "control_socket = \"/nonexistent-dir/c.sock\"\n", "1:18", `Invalid control_socket; The directory "/nonexistent-dir" does not exist`},
		{"unix listener dir missing", "listen {\n  address = \"unix:/nonexistent-dir/h.sock\"\n}\n", "2:13", `Invalid listen address; The directory "/nonexistent-dir" does not exist; forkd creates "h.sock"`},
		{"unix listener", "listen {\n  address = \"unix:logs/h.sock\"\n}\n", "", ""},
		{"abstract unix listener", "listen {\n  address = \"unix:@forkd-test\"\n}\n", "", ""},

		{"user and group", "user = \"root\"\ngroup = \"root\"\n", "", ""},
		{"numeric ids", "user = \"4000000\"\ngroup = \"4000001\"\n", "", ""},
		{"unknown user", "workers = 1\nuser = \"no-such-user-xyz\"\n", "2:8", `Unknown user; No user named "no-such-user-xyz" exists on this system.`},
		{"unknown group", "user = \"root\"\ngroup = \"no-such-group-xyz\"\n", "2:9", `Unknown group; No group named "no-such-group-xyz" exists on this system.`},
		{"group without user", "group = \"no-such-group-xyz\"\n", "1:9", "Unknown group"},
	}
	name := filepath.Join(dir, "test.hcl")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), name)
			if tt.pos == "" {
				if err != nil {
					t.Fatal(err)
				}
				if verr := c.Validate(); verr != nil {
					t.Errorf("Validate after Parse: %v", verr)
				}
				return
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if len(cerr.Diags) != 1 {
				t.Errorf("got %d diagnostics, want 1:\n%s", len(cerr.Diags), err)
			}
			msg := err.Error()
			if prefix := name + ":" + tt.pos + ": "; !strings.HasPrefix(msg, prefix) {
				t.Errorf("err = %q, want prefix %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("err = %q, want it to contain %q", msg, tt.want)
			}
		})
	}
}

// TestHostChecksBuilt checks that Validate runs the same checks on a
// configuration built in code, naming the key path.
func TestHostChecksBuilt(t *testing.T) {
	c := Default()
	c.User = "no-such-user-xyz"
	c.Log.Access = "/nonexistent-dir/a.log"
	c.Sites = []Site{{Name: "s", Hosts: []string{"*"}, Routes: []Route{
		{Prefix: "/", Static: &Static{Root: "/nonexistent-dir/www", Index: []string{DefaultIndex}}},
	}}}
	want := strings.Join([]string{
		`user: Unknown user; No user named "no-such-user-xyz" exists on this system.`,
		`log.access: Invalid access log; The directory "/nonexistent-dir" does not exist; forkd creates the log file but not its directory.`,
		`sites[0].routes[0].static.root: Invalid static root; The directory "/nonexistent-dir/www" does not exist.`,
	}, "\n")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate =\n%v\nwant\n%s", err, want)
	}
}

// TestCheckWarnsAboutMissingDirectories: forkd -t (Check) names a missing
// directory for the pidfile or a socket at its line as a warning, since
// systemd may make it when the service starts; the master's start (Load)
// refuses it.
func TestCheckWarnsAboutMissingDirectories(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.hcl")
	src := "workers = 1\npidfile = \"/nonexistent-dir/forkd.pid\"\nlisten {\n  address = \"unix:/nonexistent-dir/h.sock\"\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+":2:11: Invalid pidfile") {
		t.Fatalf("Load: %v, want the pidfile refused at 2:11", err)
	}
	c, err := Check(path)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := []string{path + ":2:11: Invalid pidfile", path + ":4:13: Invalid listen address"}
	if len(c.Warnings) != len(want) {
		t.Fatalf("warnings %q, want %d", c.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(c.Warnings[i], w) || !strings.Contains(c.Warnings[i], "/nonexistent-dir") {
			t.Errorf("warning %q, want %q about /nonexistent-dir", c.Warnings[i], w)
		}
	}
	// Anything else is still an error.
	if err := os.WriteFile(path, []byte(src+"workers = 0\nworker_timeout = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(path); err == nil {
		t.Fatal("Check accepted a bad value")
	}
}
