package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lineOf returns "path:N:" for the first line of the file at path that
// contains s: where a diagnostic about that line starts.
func lineOf(t *testing.T, path, s string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(src), "\n") {
		if strings.Contains(line, s) {
			return fmt.Sprintf("%s:%d:", path, i+1)
		}
	}
	t.Fatalf("%s has no line with %q", path, s)
	return ""
}

// TestConfigCheckHost runs forkd -t on configurations whose text is fine but
// that ask for what this machine lacks, and on files that set nothing: each
// must exit 1 and name the file and line.
func TestConfigCheckHost(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	static := func(root string) string {
		return fmt.Sprintf("workers = 1\nsite \"s\" {\n  route \"/\" {\n    static {\n      root = %q\n    }\n  }\n}\n", root)
	}
	tests := []struct {
		name, src string
		line      string // text of the line the error names; "" = valid
		want      string
	}{
		{"valid", static("www") + "log {\n  file = \"forkd.log\"\n  access = \"access.log\"\n}\nuser = \"root\"\ngroup = \"root\"\n", "", ""},
		{"missing static root", static("./does-not-exist"), "root =", "does-not-exist\" does not exist"},
		{"static root is a file", static("a-file"), "root =", "is not a directory"},
		{"log directory missing", "log {\n  file = \"/nonexistent-dir/x.log\"\n}\n", "file =", `The directory "/nonexistent-dir" does not exist`},
		{"access log directory missing", "log {\n  level = \"info\"\n  access = \"/nonexistent-dir/a.log\"\n}\n", "access =", `The directory "/nonexistent-dir" does not exist`},
		{"unknown user", "workers = 1\nuser = \"no-such-user-xyz\"\n", "user =", `No user named "no-such-user-xyz"`},
		{"unknown group", "workers = 1\ngroup = \"no-such-group-xyz\"\n", "group =", `No group named "no-such-group-xyz"`},
		{"empty file", "", "", "Empty configuration"},
		{"blank file", "\n  \t\n\n", "", "Empty configuration"},
		{"comments only", "# workers = 4\n// nothing else\n", "", "Empty configuration"},
		{"unknown placeholder", "site \"s\" {\n  route \"/\" {\n    redirect {\n      location = \"{scheme}://{host}:{port}{url}\"\n    }\n  }\n}\n",
			"location =", "Unknown placeholder {url}"},
		{"h2c upgrade", "site \"s\" {\n  route \"/\" {\n    proxy {\n      upstreams = [\"127.0.0.1:9\"]\n      upgrades = [\"websocket\", \"h2c\"]\n    }\n  }\n}\n",
			"upgrades =", `"h2c" is never tunnelled`},
		{"trusted without proxy_protocol", "listen {\n  address = \"127.0.0.1:8080\"\n  trusted = [\"127.0.0.1/32\"]\n}\n", "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("c%d.hcl", i))
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runCLI(t, "-t", "-c", path)
			if tt.want == "" {
				if code != 0 || !strings.Contains(out, "valid") {
					t.Fatalf("exit %d, want 0:\n%s", code, out)
				}
				return
			}
			where := path + ":1:1:"
			if tt.line != "" {
				where = lineOf(t, path, tt.line)
			}
			if code != 1 || !strings.Contains(out, where) || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 1 with %q and %q:\n%s", code, where, tt.want, out)
			}
		})
	}
}

// startFile runs the master on the configuration file at path without
// waiting for it to become ready.
func startFile(t *testing.T, path string) *server {
	t.Helper()
	s := &server{t: t, dir: filepath.Dir(path), cfg: path, exited: make(chan struct{}), logs: newLogWatcher()}
	s.cmd = execIn(s.dir, binary, "-c", path)
	s.run()
	return s
}

// A user that does not exist stops the master at once with exit 1 and the
// line that names it, instead of retrying workers that cannot be started.
func TestStartUnknownUser(t *testing.T) {
	s := start(t, opts{workers: 1, noWait: true, extra: `user = "no-such-user-xyz"`})
	if code := s.waitExit(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	where := lineOf(t, s.cfg, "user =")
	// The output is copied from a pipe: wait for the line.
	s.seen(regexp.QuoteMeta(where)+`.*Unknown user`, 10*time.Second)
}

// An empty configuration file is not the built-in defaults: the master
// refuses to start on it.
func TestStartEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(path, []byte("\n# nothing yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startFile(t, path)
	if code := s.waitExit(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	// The output is copied from a pipe: wait for the line.
	s.seen(regexp.QuoteMeta(path+":1:1:")+` Empty configuration`, 10*time.Second)
}

// A reload refuses an emptied file and a static root that does not exist,
// naming file and line, and the server keeps serving its configuration.
func TestReloadRefusesEmptyAndMissingRoot(t *testing.T) {
	s := start(t, opts{workers: 1})
	s.rewrite("")
	s.signal(syscall.SIGHUP)
	s.waitLog(`reload refused.*`+regexp.QuoteMeta(s.cfg+":1:1:")+` Empty configuration`, 10*time.Second)
	if code, body, err := get(s.addr, "/"); err != nil || code != 200 || body != "hello\n" {
		t.Fatalf("GET after the refused reload: %d %q %v", code, body, err)
	}

	s.rewrite(fmt.Sprintf("workers = 1\nlisten {\n  address = %q\n}\nsite \"s\" {\n  route \"/\" {\n    static {\n      root = \"./no-such-root\"\n    }\n  }\n}\n", s.addr))
	s.signal(syscall.SIGHUP)
	s.waitLog(`reload refused.*`+regexp.QuoteMeta(s.cfg+":8:")+`.*no-such-root`, 10*time.Second)
	if code, body, err := get(s.addr, "/"); err != nil || code != 200 || body != "hello\n" {
		t.Fatalf("GET after the refused reload: %d %q %v", code, body, err)
	}
}

// TestMissingStaticRootExitsOne: what forkd -t can see is refused before
// any worker starts, with file:line.
func TestMissingStaticRootExitsOne(t *testing.T) {
	s := start(t, opts{workers: 2, noWait: true, sites: `site "x" {
  hosts = ["*"]
  route "/" {
    static {
      root = "./does-not-exist"
    }
  }
}`})
	if code := s.waitExit(15 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, s.logs.String())
	}
	// The output is copied from a pipe: wait for the line.
	s.seen(`config\.hcl:\d+.*does-not-exist`, 10*time.Second)
}

// TestConfigOfAnySize: a 5 MB configuration reaches the workers at start
// and on reload.
func TestConfigOfAnySize(t *testing.T) {
	site := func(c byte) string {
		return fmt.Sprintf("site \"big\" {\n  hosts = [\"*\"]\n  route \"/\" {\n    respond {\n      body = %q\n    }\n  }\n}\n", strings.Repeat(string(c), 5<<20))
	}
	s := start(t, opts{workers: 2, sites: site('a')})
	code, body, err := get(s.addr, "/")
	if err != nil || code != 200 || len(body) != 5<<20 || body[0] != 'a' {
		t.Fatalf("GET: %d, %d bytes, %v", code, len(body), err)
	}
	cfg, _ := os.ReadFile(s.cfg)
	s.rewrite(strings.Replace(string(cfg), strings.Repeat("a", 5<<20), strings.Repeat("b", 5<<20), 1))
	s.signal(syscall.SIGHUP)
	s.waitLog(`all workers ready.*generation=2`, 30*time.Second)
	eventually(t, 10*time.Second, "the new body", func() bool {
		code, body, err := get(s.addr, "/")
		return err == nil && code == 200 && len(body) == 5<<20 && body[0] == 'b'
	})
	if s.logs.has(`ipc failure|message too long`) {
		t.Fatal("ipc failure with a big configuration")
	}
}
