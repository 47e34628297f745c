package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c := Default()
	if c.Workers != runtime.NumCPU() {
		t.Errorf("Workers = %d, want NumCPU %d", c.Workers, runtime.NumCPU())
	}
	if want := []Listen{{Address: "127.0.0.1:8080"}}; !reflect.DeepEqual(c.Listen, want) {
		t.Errorf("Listen = %+v, want %+v", c.Listen, want)
	}
	if c.WorkerTimeout != 30*time.Second || c.GracefulTimeout != 30*time.Second {
		t.Errorf("timeouts = %v, %v", c.WorkerTimeout, c.GracefulTimeout)
	}
	if c.MaxWorkerMemory != 0 || c.MaxWorkerMemoryWindow != 30*time.Second {
		t.Errorf("max_worker_memory = %d, window %v; want 0 (off), 30s", c.MaxWorkerMemory, c.MaxWorkerMemoryWindow)
	}
	if c.Log != (Log{Level: "info", Format: "text", AccessFormat: "combined"}) {
		t.Errorf("Log = %+v", c.Log)
	}
	wantLimits := Limits{
		RequestLine: 8192, HeaderBytes: 65536, HeaderCount: 100, BodyBytes: 10485760,
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 75 * time.Second,
		WriteTimeout: 60 * time.Second, MaxConnections: 10000,
	}
	if c.Limits != wantLimits {
		t.Errorf("Limits = %+v, want %+v", c.Limits, wantLimits)
	}
	if c.Sites != nil || c.Metrics != nil || c.Path != "" {
		t.Errorf("Sites, Metrics, Path = %v, %v, %q; want none", c.Sites, c.Metrics, c.Path)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestAccessFormat: the access log has a format of its own, whatever the
// error log's is.
func TestAccessFormat(t *testing.T) {
	for _, c := range []struct{ src, format, access string }{
		{"workers = 1\n", "text", "combined"},
		{"log {\n  format = \"json\"\n}\n", "json", "combined"},
		{"log {\n  access_format = \"JSON\"\n}\n", "text", "json"},
	} {
		cfg, err := Parse([]byte(c.src), "a.hcl")
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		if cfg.Log.Format != c.format || cfg.Log.AccessFormat != c.access {
			t.Errorf("%q: format %q, access_format %q; want %q, %q", c.src, cfg.Log.Format, cfg.Log.AccessFormat, c.format, c.access)
		}
	}
}

// A file that sets nothing is an error at its first line: built-in
// defaults apply only when there is no file.
func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n", " \t\r\n\n", "# nothing\n", "// c\n/* block\n*/\n", "# no newline"} {
		c, err := Parse([]byte(src), "empty.hcl")
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Fatalf("Parse(%q) = %+v, %v; want *Error", src, c, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "empty.hcl:1:1: Empty configuration;") {
			t.Errorf("Parse(%q): %q, want empty.hcl:1:1: Empty configuration", src, msg)
		}
	}
	path := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(path, []byte("\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1:1: ") {
		t.Errorf("Load(empty file) = %v, want %s:1:1", err, path)
	}
}

// A file with one setting at its default is the built-in defaults.
func TestParseMinimal(t *testing.T) {
	c, err := Parse([]byte("workers = 0 # one per CPU\n"), "min.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path, _ = filepath.Abs("min.hcl")
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// TestLoadFull loads DESIGN.md's example with every key written out.
func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := Default()
	want.Path = filepath.Join(dir, "full.hcl")
	want.Sites = []Site{{
		Name:  "example",
		Hosts: []string{"*"},
		Routes: []Route{
			{Prefix: "/", Static: &Static{Root: filepath.Join(dir, "www"), Index: []string{"index.html"}, Gzip: true}},
			{Prefix: "/api/", Proxy: &Proxy{
				Upstreams: []string{"127.0.0.1:9000", "127.0.0.1:9001"}, ConnectTimeout: 5 * time.Second, ResponseTimeout: 60 * time.Second,
				Balance: BalanceLeastConn, Weights: []int{3, 1}, Keepalive: 16, KeepaliveTimeout: DefaultKeepaliveTimeout, MaxFails: 3, FailTimeout: 30 * time.Second,
				Host: "api.internal", Via: true, RetryBodyBuffer: 8 << 10, Upgrades: []string{DefaultUpgrade},
			}},
			{Prefix: "/healthz", Respond: &Respond{Status: 200, Body: "ok\n"}},
		},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %s\nwant %s", mustJSON(t, c), mustJSON(t, want))
	}
}

func TestLoadRich(t *testing.T) {
	c, err := Load("testdata/rich.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := &Config{
		Workers:               4,
		WorkerTimeout:         45 * time.Second,
		GracefulTimeout:       90 * time.Second,
		MaxRequests:           100000,
		MaxRequestsJitter:     500,
		Pidfile:               filepath.Join(dir, "run/forkd.pid"),
		User:                  "root",
		Group:                 "0",
		ControlSocket:         "/tmp/forkd-control.sock",
		MaxWorkerMemory:       512 << 20,
		MaxWorkerMemoryWindow: time.Minute,
		Listen: []Listen{
			{Address: "0.0.0.0:80", ReusePort: true},
			{Address: "[::1]:8443"},
			{Address: "unix:" + filepath.Join(dir, "run/forkd.sock"), Mode: 0o660},
		},
		Log: Log{Level: "debug", Format: "json", File: filepath.Join(dir, "forkd.log"), Access: "-", AccessFormat: "combined"},
		Limits: Limits{
			RequestLine: 4096, HeaderBytes: 32768, HeaderCount: 50, BodyBytes: 0,
			ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
			WriteTimeout: 500 * time.Millisecond, MaxConnections: 256,
		},
		Metrics: &Metrics{Address: "127.0.0.1:9200", Path: "/metrics"},
		HTTP2:   HTTP2{MaxConcurrentStreams: DefaultMaxConcurrentStreams, MaxReadFrameSize: DefaultMaxReadFrameSize},
		Sites: []Site{
			{
				Name:  "www",
				Hosts: []string{"example.com", "*.example.com"},
				Routes: []Route{
					{Prefix: "/", Static: &Static{Root: filepath.Join(dir, "www"), Index: []string{"index.html", "index.htm"}, Dotfiles: true}},
					{Prefix: "/api/", Proxy: &Proxy{
						Upstreams:      []string{"127.0.0.1:9000", "backend.internal:9001", "unix:" + filepath.Join(dir, "api.sock")},
						ConnectTimeout: 250 * time.Millisecond, ResponseTimeout: 2 * time.Minute,
						Balance: BalanceRoundRobin, Keepalive: DefaultKeepalive, KeepaliveTimeout: DefaultKeepaliveTimeout, MaxFails: DefaultMaxFails,
						FailTimeout: DefaultFailTimeout, Host: ProxyHostClient, RetryBodyBuffer: DefaultRetryBodyBuffer,
						Upgrades: []string{DefaultUpgrade},
					}},
				},
			},
			{
				Name:  "fallback",
				Hosts: []string{"*"},
				Routes: []Route{{Prefix: "/", Respond: &Respond{
					Status: 404, Body: "not here\n",
					Headers: map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Forkd": "yes"},
				}}},
			},
		},
		Path: filepath.Join(dir, "rich.hcl"),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %s\nwant %s", mustJSON(t, c), mustJSON(t, want))
	}
	if got := c.ControlSocketPath(); got != "/tmp/forkd-control.sock" {
		t.Errorf("ControlSocketPath = %q", got)
	}
}

// The master sends the configuration to workers as JSON; it must arrive
// unchanged.
func TestJSONRoundTrip(t *testing.T) {
	for _, name := range []string{"full.hcl", "rich.hcl", "paths.hcl"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			if name == "paths.hcl" {
				path, _ = pathsLayout(t)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			var back Config
			if err := json.Unmarshal(mustJSON(t, c), &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, &back) {
				t.Errorf("round trip changed the config:\n got %s\nwant %s", mustJSON(t, &back), mustJSON(t, c))
			}
			if err := back.Validate(); err != nil {
				t.Errorf("Validate after round trip: %v", err)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		c := Default()
		var back Config
		if err := json.Unmarshal(mustJSON(t, c), &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, &back) {
			t.Errorf("round trip changed the config: %+v", back)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pathsLayout copies testdata/paths.hcl to dir/sub/forkd.hcl and makes the
// directories its relative paths name (sub/www for a static root, log for
// the log file), so that it loads.
func pathsLayout(t *testing.T) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile("testdata/paths.hcl")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "sub", "forkd.hcl")
	for _, d := range []string{filepath.Join(dir, "sub", "www"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// Relative paths are resolved against the file's directory, whatever the
// working directory.
func TestRelativePaths(t *testing.T) {
	path, dir := pathsLayout(t)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "sub")
	checks := []struct{ name, got, want string }{
		{"path", c.Path, path},
		{"pidfile", c.Pidfile, filepath.Join(base, "forkd.pid")},
		{"control socket", c.ControlSocket, ""},
		{"control socket path", c.ControlSocketPath(), filepath.Join(base, "forkd.sock")},
		{"log file", c.Log.File, filepath.Join(dir, "log", "forkd.log")},
		{"access log", c.Log.Access, filepath.Join(base, "access.log")},
		{"unix listen", c.Listen[0].Address, "unix:" + filepath.Join(base, "forkd.sock")},
		{"abstract listen", c.Listen[1].Address, "unix:@forkd"},
		{"absolute listen", c.Listen[2].Address, "unix:/run/forkd.sock"},
		{"metrics", c.Metrics.Address, "unix:" + filepath.Join(base, "metrics.sock")},
		{"static root", c.Sites[0].Routes[0].Static.Root, filepath.Join(base, "www")},
		{"static root dot", c.Sites[0].Routes[1].Static.Root, base},
		{"absolute root", c.Sites[0].Routes[2].Static.Root, "/"},
		{"tcp upstream", c.Sites[0].Routes[3].Proxy.Upstreams[0], "localhost:9000"},
		{"unix upstream", c.Sites[0].Routes[3].Proxy.Upstreams[1], "unix:" + filepath.Join(base, "app.sock")},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	if m := c.Listen[0].Mode; m != 0o666 {
		t.Errorf("unix listen mode = %#o, want default 0666", m)
	}
	if m := c.Listen[1].Mode; m != 0o600 {
		t.Errorf("mode = 600 gave %#o, want 0600", m)
	}
	if m := c.Listen[2].Mode; m != 0o640 {
		t.Errorf("mode = \"0o640\" gave %#o, want 0640", m)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load("testdata/no-such-file.hcl")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
	if _, err := Load("testdata/full.hcl"); err != nil {
		t.Errorf("Load(full.hcl) = %v", err)
	}
}

// TestDesignOneLineBlocks documents that HCL allows a single argument in a
// one-line block: DESIGN.md's `static { root = "./www"  index = [...] }`
// must be written over several lines.
func TestDesignOneLineBlocks(t *testing.T) {
	_, err := Load("testdata/design_oneline.hcl")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if !strings.HasPrefix(err.Error(), "testdata/design_oneline.hcl:4:") {
		t.Errorf("err = %q, want it at line 4", err)
	}
}

// TestManyErrors checks that all problems are reported at once, in file
// order, one per line.
func TestManyErrors(t *testing.T) {
	_, err := Load("testdata/errors.hcl")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := []string{
		"testdata/errors.hcl:1:18: Invalid workers;",
		"testdata/errors.hcl:2:18: Invalid duration;",
		"testdata/errors.hcl:5:13: Invalid listen address;",
		"testdata/errors.hcl:9:11: Invalid log level;",
		"testdata/errors.hcl:13:9: Invalid route prefix;",
		"testdata/errors.hcl:14:24: Invalid status code;",
		"testdata/errors.hcl:16:3: Missing route handler;",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || len(cerr.Diags) != len(want) {
		t.Fatalf("got %d lines, %d diags, want %d:\n%s", len(lines), len(cerr.Diags), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// TestLoadControlSkipsTheMachine: the control commands find the socket of
// a configuration whose files this user cannot read or that have gone.
func TestLoadControlSkipsTheMachine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.hcl")
	src := `control_socket = "forkd.sock"
user = "no-such-user-forkd"
listen {
  address = "127.0.0.1:8443"
  tls {
    certificate = "missing.pem"
    key         = "missing.key"
  }
}
site "s" {
  route "/" {
    static {
      root = "./gone"
    }
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted missing files and an unknown user")
	}
	c, err := LoadControl(path)
	if err != nil {
		t.Fatalf("LoadControl: %v", err)
	}
	if c.ControlSocketPath() != filepath.Join(dir, "forkd.sock") {
		t.Fatalf("control socket %q", c.ControlSocketPath())
	}
	if len(c.Listen[0].TLS) != 1 || len(c.Listen[0].TLS[0].KeyPEM) != 0 {
		t.Fatal("LoadControl read a key")
	}
	// The syntax and the values are still checked.
	if err := os.WriteFile(path, []byte("workers = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadControl(path); err == nil {
		t.Fatal("LoadControl accepted a bad value")
	}
}

// TestLoadLenient: the control commands find the socket and the timeouts
// of a file the loader refuses, whether a value is wrong or the syntax is
// broken after the settings they need.
func TestLoadLenient(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.hcl")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	head := "pidfile = \"run/forkd.pid\"\nworker_timeout = \"7m\"\ngraceful_timeout = \"never\"\ndrain_delay = \"3s\"\n"
	for _, tt := range []struct {
		name, src string
		syntax    bool
	}{
		{"invalid value", head + "workers = \"many\"\nbogus = 1\n", false},
		{"broken syntax", head + "site \"s\" {\n  route \"/\" {\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.src)
			if _, err := LoadControl(path); err == nil {
				t.Fatal("LoadControl accepted the file")
			}
			c, err := LoadLenient(path)
			var cerr *Error
			if tt.syntax != errors.As(err, &cerr) || (!tt.syntax && err != nil) {
				t.Fatalf("LoadLenient: err %v, want a syntax error: %v", err, tt.syntax)
			}
			if c == nil {
				t.Fatal("no configuration")
			}
			if got, want := c.ControlSocketPath(), filepath.Join(dir, "run/forkd.sock"); got != want {
				t.Errorf("control socket %q, want %q", got, want)
			}
			if c.WorkerTimeout != 7*time.Minute || c.GracefulTimeout != DefaultGracefulTimeout || c.DrainDelay != 3*time.Second {
				t.Errorf("timeouts %v %v %v, want 7m, the default, 3s", c.WorkerTimeout, c.GracefulTimeout, c.DrainDelay)
			}
		})
	}
	if _, err := LoadLenient(filepath.Join(dir, "missing.hcl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestParseCompress checks a compress block's defaults and a route's
// block replacing its site's.
func TestParseCompress(t *testing.T) {
	src := `site "s" {
  compress {}
  route "/a" {
    respond {}
  }
  route "/b" {
    compress {
      algorithms = ["gzip"]
      types      = ["text/plain"]
      min_length = 0
      cache      = "1MiB"
      levels     = { gzip = 1, zstd = 19 }
    }
    static {
      root          = "."
      precompressed = ["br", "gzip"]
    }
  }
}
`
	c, err := Parse([]byte(src), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sites[0]
	want := &Compress{Algorithms: DefaultCompressAlgorithms, Types: DefaultCompressTypes,
		MinLength: DefaultCompressMinLength, Cache: DefaultCompressCache}
	if !reflect.DeepEqual(s.Compress, want) {
		t.Errorf("site compress = %+v, want %+v", s.Compress, want)
	}
	if s.Routes[0].Compress != nil {
		t.Errorf("route /a compress = %+v, want nil (the site's applies)", s.Routes[0].Compress)
	}
	want = &Compress{Algorithms: []string{"gzip"}, Types: []string{"text/plain"}, MinLength: 0, Cache: 1 << 20,
		Levels: map[string]int{"gzip": 1, "zstd": 19}}
	if !reflect.DeepEqual(s.Routes[1].Compress, want) {
		t.Errorf("route /b compress = %+v, want %+v", s.Routes[1].Compress, want)
	}
	if c := s.Routes[1].Compress; c.Level("gzip") != 1 || c.Level("br") != DefaultCompressLevels["br"] {
		t.Errorf("levels: gzip %d, br %d", c.Level("gzip"), c.Level("br"))
	}
	if got := s.Routes[1].Static.Precompressed; !reflect.DeepEqual(got, []string{"br", "gzip"}) {
		t.Errorf("precompressed = %q", got)
	}
}

// TestSetDefaultsCompress: a compress block built in code gets the
// default algorithms and types; zero lengths stay zero.
func TestSetDefaultsCompress(t *testing.T) {
	c := &Config{Sites: []Site{{Name: "s", Compress: &Compress{}, Routes: []Route{
		{Prefix: "/", Compress: &Compress{Algorithms: []string{CodingGzip}}, Respond: &Respond{}},
	}}}}
	c.SetDefaults()
	s := c.Sites[0]
	if !reflect.DeepEqual(s.Compress, &Compress{Algorithms: DefaultCompressAlgorithms, Types: DefaultCompressTypes}) {
		t.Errorf("site compress %+v", s.Compress)
	}
	if rc := s.Routes[0].Compress; !reflect.DeepEqual(rc.Algorithms, []string{CodingGzip}) || !reflect.DeepEqual(rc.Types, DefaultCompressTypes) {
		t.Errorf("route compress %+v", rc)
	}
}
