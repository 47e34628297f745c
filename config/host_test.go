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
