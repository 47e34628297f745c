package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// site wraps route bodies in a site block; the route's first line is line 2.
func site(routes string) string { return "site \"s\" {\n" + routes + "}\n" }

// TestErrors checks each kind of problem on its own: exactly one
// diagnostic, at the expected line, mentioning the expected text.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		// Syntax and schema, reported by HCL.
		{"syntax", "workers = \n", 1, "Invalid expression"},
		{"unclosed block", "log {\n  level = \"info\"\n", 1, "Unclosed configuration block"},
		{"unknown key", "workers = 1\nwokers = 2\n", 2, `Unsupported argument; An argument named "wokers"`},
		{"unknown block", "\n\nserver {\n}\n", 3, `Unsupported block type`},
		{"unknown key in block", "limits {\n  request_lines = 1\n}\n", 2, `named "request_lines"`},
		{"redefined key", "workers = 1\nworkers = 2\n", 2, "Attribute redefined"},
		{"variable", "workers = cpus\n", 1, "Variables not allowed"},
		{"function", "workers = max(1, 2)\n", 1, "Function calls not allowed"},
		{"site without name", "site {\n  route \"/\" {\n    respond {}\n  }\n}\n", 1, "Missing name for site"},
		{"listen with label", "listen \"x\" {\n  address = \":80\"\n}\n", 1, "Extraneous label for listen"},
		{"listen without address", "\nlisten {\n}\n", 2, `Missing required argument; The argument "address" is required`},
		{"duplicate log block", "log {\n}\nlog {\n}\n", 3, "Duplicate log block; Only one log block is allowed; the first is at line 1."},
		{"duplicate limits block", "limits {\n}\n\nlimits {\n}\n", 4, "Duplicate limits block"},

		// Types.
		{"workers string", "workers = \"many\"\n", 1, `Inappropriate value for attribute "workers": a number is required`},
		{"workers fraction", "workers = 1.5\n", 1, `Invalid number; The "workers" value must be a whole number`},
		{"bool", "listen {\n  address = \":80\"\n  reuse_port = \"sometimes\"\n}\n", 3, "a bool is required"},
		{"list", site("  hosts = \"*\"\n  route \"/\" {\n    respond {}\n  }\n"), 2, "a list of strings is required"},
		{"list null", site("  hosts = [\"a\", null]\n  route \"/\" {\n    respond {}\n  }\n"), 2, "must not contain null"},
		{"string", "pidfile = [\"a\"]\n", 1, "a string is required"},
		{"map", site("  route \"/\" {\n    respond {\n      headers = [\"a\"]\n    }\n  }\n"), 4, "a map of strings is required"},

		// Compression.
		{"compress unknown algorithm", site("  compress {\n    algorithms = [\"gzip\", \"deflate\"]\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Unknown content coding; "deflate" is not one of`},
		{"compress duplicate algorithm", site("  route \"/\" {\n    respond {}\n    compress {\n      algorithms = [\"br\",\n \"br\"]\n    }\n  }\n"), 6, `Duplicate content coding; "br" is listed twice.`},
		{"compress no algorithm", site("  compress {\n    algorithms = []\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Invalid algorithms`},
		{"compress bad type", site("  compress {\n    types = [\"text\"]\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Invalid media type; "text" is not a media type`},
		{"compress type with parameters", site("  compress {\n    types = [\"text/html; charset=utf-8\"]\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Invalid media type`},
		{"compress negative min_length", site("  compress {\n    min_length = -1\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Invalid min_length`},
		{"compress bad cache", site("  compress {\n    cache = \"lots\"\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Invalid size`},
		{"compress unknown key", site("  compress {\n    level = 9\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `named "level"`},
		{"compress level out of range", site("  compress {\n    levels = {\n      br = 3\n      gzip = 10\n    }\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 5, `Invalid compression level; The gzip level must be from 1 to 9, not 10.`},
		{"compress level unknown coding", site("  compress {\n    levels = { deflate = 1 }\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Unknown content coding; "deflate" is not one of`},
		{"compress level not whole", site("  compress {\n    levels = { gzip = 1.5 }\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `must hold whole numbers`},
		{"duplicate compress", site("  compress {}\n  compress {}\n  route \"/\" {\n    respond {}\n  }\n"), 3, `Duplicate compress block`},
		{"precompressed unknown", site("  route \"/\" {\n    static {\n      root = \".\"\n      precompressed = [\"br\", \"xz\"]\n    }\n  }\n"), 5, `Unknown content coding; "xz"`},

		// Top-level values.
		{"negative workers", "workers = -1\n", 1, "Invalid workers; The value must be 0 (one per CPU) or between 1 and 1024; got -1."},
		{"too many workers", "\nworkers = 1025\n", 2, "got 1025"},
		{"bad duration", "worker_timeout = \"10x\"\n", 1, `Invalid duration; The "worker_timeout" value "10x" is not a duration`},
		{"duration number", "graceful_timeout = 30\n", 1, "must be a duration string"},
		{"zero duration", "\ngraceful_timeout = \"0s\"\n", 2, "Invalid graceful_timeout; The duration must be greater than zero"},
		{"negative duration", "worker_timeout = \"-1s\"\n", 1, "Invalid worker_timeout"},
		{"negative max_requests", "max_requests = -5\n", 1, "Invalid max_requests; The value must not be negative; got -5."},
		{"negative jitter", "max_requests_jitter = -1\n", 1, "Invalid max_requests_jitter"},

		// Load-balancer keys.
		{"negative drain_delay", "\ndrain_delay = \"-1s\"\n", 2, "Invalid drain_delay; The duration must not be negative"},
		{"drain_delay number", "drain_delay = 2\n", 1, "must be a duration string"},
		{"health with a key", site("  route \"/h\" {\n    health {\n      status = 200\n    }\n  }\n"), 4, `Unsupported argument; An argument named "status"`},
		{"health and respond", site("  route \"/h\" {\n    respond {}\n    health {}\n  }\n"), 4, `Conflicting route handlers; Route "/h" already has a respond block at line 3`},
		{"trusted not a list", "listen {\n  address = \":80\"\n  trusted = \"10.0.0.0/8\"\n}\n", 3, "a list of strings is required"},
		{"trusted bad network", "listen {\n  address = \":80\"\n  trusted = [\"10.0.0.0/8\",\n    \"10.0.0.0/33\"]\n}\n", 4, `Invalid trusted network; "10.0.0.0/33" is not a network`},
		{"trusted host bits", "listen {\n  address = \":80\"\n  trusted = [\"10.0.0.1/8\"]\n}\n", 3, `has bits set past its /8; write "10.0.0.0/8"`},
		{"trusted hostname", "listen {\n  address = \":80\"\n  trusted = [\"lb.example\"]\n}\n", 3, `"lb.example" is not an IP address`},
		{"proxy_protocol not bool", "listen {\n  address = \":80\"\n  proxy_protocol = \"v2\"\n}\n", 3, "a bool is required"},

		// Listeners.
		{"address without port", "listen {\n  address = \"localhost\"\n}\n", 2, `Invalid listen address; The address "localhost" is not "host:port"`},
		{"bad port", "listen {\n  address = \"127.0.0.1:99999\"\n}\n", 2, `The port "99999"`},
		{"named port", "listen {\n  address = \"127.0.0.1:http\"\n}\n", 2, `The port "http"`},
		{"bad host", "listen {\n  address = \"exa mple:80\"\n}\n", 2, `The host "exa mple"`},
		{"bad ipv6", "listen {\n  address = \"[::g]:80\"\n}\n", 2, "is not an IPv6 address"},
		{"empty unix path", "listen {\n  address = \"unix:\"\n}\n", 2, "names no socket path"},
		{"long unix path", "listen {\n  address = \"unix:/" + strings.Repeat("a", 110) + "\"\n}\n", 2, "longer than 107 bytes"},
		{"duplicate listen", "listen {\n  address = \"127.0.0.1:80\"\n}\nlisten {\n  address = \"127.0.0.1:0080\"\n}\n", 5,
			`Duplicate listen address; The address "127.0.0.1:0080" is already listened on at line 2.`},
		{"duplicate unix listen", "listen {\n  address = \"unix:/tmp/a.sock\"\n}\nlisten {\n  address = \"unix:/tmp/a.sock\"\n}\n", 5, "Duplicate listen address"},
		{"bad mode", "listen {\n  address = \"unix:/tmp/a.sock\"\n  mode = \"0888\"\n}\n", 3, "Invalid socket mode; The mode must be octal"},
		{"mode too big", "listen {\n  address = \"unix:/tmp/a.sock\"\n  mode = 1777\n}\n", 3, "Invalid socket mode"},
		{"mode zero", "listen {\n  address = \"unix:/tmp/a.sock\"\n  mode = \"0\"\n}\n", 3, "Invalid socket mode"},
		{"mode on tcp", "listen {\n  address = \"127.0.0.1:80\"\n  mode = \"0660\"\n}\n", 3, "mode applies only to unix sockets"},
		{"reuse_port on unix", "listen {\n  address = \"unix:/tmp/a.sock\"\n  reuse_port = true\n}\n", 3, "reuse_port applies only to TCP"},

		// Log and limits.
		{"log level", "log {\n  level = \"loud\"\n}\n", 2, `Invalid log level; The level "loud" is not one of trace, debug, info, warn or error.`},
		{"log format", "log {\n  format = \"xml\"\n}\n", 2, `Invalid log format`},
		{"access format", "log {\n  format = \"json\"\n  access_format = \"text\"\n}\n", 3, `Invalid access log format; The format "text" is not combined or json.`},
		{"negative limit", "limits {\n  header_count = -1\n}\n", 2, "Invalid header_count; The value must be greater than zero; got -1."},
		{"zero limit", "limits {\n\n  request_line = 0\n}\n", 3, "Invalid request_line"},
		{"negative body", "limits {\n  body_bytes = -1\n}\n", 2, "Invalid body_bytes; The value must not be negative"},
		{"limit timeout", "limits {\n  idle_timeout = \"forever\"\n}\n", 2, `"idle_timeout" value "forever" is not a duration`},
		{"limit zero timeout", "limits {\n  write_timeout = \"0s\"\n}\n", 2, "Invalid write_timeout"},
		{"huge number", "limits {\n  body_bytes = 1e30\n}\n", 2, "fits in 64 bits"},

		// Metrics.
		{"metrics address", "metrics {\n  address = \"9100\"\n}\n", 2, "Invalid metrics address"},
		{"metrics path", "metrics {\n  path = \"metrics\"\n}\n", 2, `Invalid metrics path; The path "metrics" must start with "/".`},
		{"metrics on listener", "listen {\n  address = \"127.0.0.1:9100\"\n}\nmetrics {\n}\n", 4, "is already a listener at line 2"},

		// Sites and routes.
		{"no routes", "\nsite \"s\" {\n}\n", 2, `Missing route; Site "s" has no route blocks.`},
		{"duplicate site", site("  route \"/\" {\n    respond {}\n  }\n") + "site \"s\" {\n  hosts = [\"b\"]\n  route \"/\" {\n    respond {}\n  }\n}\n", 6,
			`Duplicate site; A site named "s" is already defined at line 1.`},
		{"empty site name", "site \"\" {\n  route \"/\" {\n    respond {}\n  }\n}\n", 1, "Invalid site name"},
		{"bad host", site("  hosts = [\"a.com\", \"b.com:80\"]\n  route \"/\" {\n    respond {}\n  }\n"), 2, `Invalid host; The host "b.com:80"`},
		{"empty hosts", site("  hosts = []\n  route \"/\" {\n    respond {}\n  }\n"), 2, "Missing hosts"},
		{"duplicate host", site("  hosts = [\"A.com\", \"a.com\"]\n  route \"/\" {\n    respond {}\n  }\n"), 2, `Duplicate host; The host "a.com" is already matched at line 2.`},
		{"duplicate host across sites", site("  route \"/\" {\n    respond {}\n  }\n") + "site \"t\" {\n  route \"/\" {\n    respond {}\n  }\n}\n", 6,
			`Duplicate host; The host "*" is already matched at line 1.`},
		{"prefix without slash", site("  route \"api\" {\n    respond {}\n  }\n"), 2, `Invalid route prefix; The prefix "api" must start with "/".`},
		{"prefix with query", site("  route \"/a?b\" {\n    respond {}\n  }\n"), 2, "Invalid route prefix"},
		{"duplicate prefix", site("  route \"/a\" {\n    respond {}\n  }\n  route \"/a\" {\n    respond {}\n  }\n"), 5,
			`Duplicate route; Site "s" already has a route "/a" at line 2.`},
		{"no handler", site("  route \"/\" {\n  }\n"), 2, `Missing route handler; Route "/" needs one static, proxy, respond, health or redirect block.`},
		{"two handlers", site("  route \"/\" {\n    respond {}\n    static {\n      root = \".\"\n    }\n  }\n"), 4,
			`Conflicting route handlers; Route "/" already has a respond block at line 3`},
		{"same handler twice", site("  route \"/\" {\n    respond {}\n    respond {}\n  }\n"), 4,
			`Duplicate respond block; Route "/" already has a respond block at line 3`},
		{"unknown handler", site("  route \"/\" {\n    rewrite {}\n  }\n"), 3, "Unsupported block type"},
		{"static without root", site("  route \"/\" {\n    static {\n    }\n  }\n"), 3, `The argument "root" is required`},
		{"static empty root", site("  route \"/\" {\n    static {\n      root = \"\"\n    }\n  }\n"), 4, "Invalid static root"},
		{"static bad index", site("  route \"/\" {\n    static {\n      root = \"/\"\n      index = [\"index.html\",\n        \"a/b.html\"]\n    }\n  }\n"), 6,
			`Invalid index file; The index entry "a/b.html"`},
		{"proxy without upstreams", site("  route \"/\" {\n    proxy {\n    }\n  }\n"), 3, `The argument "upstreams" is required`},
		{"proxy empty upstreams", site("  route \"/\" {\n    proxy {\n      upstreams = []\n    }\n  }\n"), 4, "Missing upstreams"},
		{"proxy bad upstream", site("  route \"/\" {\n    proxy {\n      upstreams = [\n        \"127.0.0.1:9000\",\n        \"http://x\",\n      ]\n    }\n  }\n"), 6,
			`Invalid upstream; The address "http://x" is not "host:port"`},
		{"proxy upstream port 0", site("  route \"/\" {\n    proxy {\n      upstreams = [\"127.0.0.1:0\"]\n    }\n  }\n"), 4, "Invalid upstream"},
		{"proxy upstream no host", site("  route \"/\" {\n    proxy {\n      upstreams = [\":9000\"]\n    }\n  }\n"), 4, "names no host"},
		{"proxy bad timeout", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      connect_timeout = \"5\"\n    }\n  }\n"), 5,
			`"connect_timeout" value "5" is not a duration`},
		{"proxy balance", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      balance = \"random\"\n    }\n  }\n"), 5, `Invalid balance; The balance "random" is not one of`},
		{"proxy weights count", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      weights = [1, 2]\n    }\n  }\n"), 5, "weights has 2 entries for 1 upstreams"},
		{"proxy weight zero", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      weights = [0]\n    }\n  }\n"), 5, "Weight 0 is 0"},
		{"proxy weight fraction", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      weights = [1.5]\n    }\n  }\n"), 5, "must hold whole numbers"},
		{"proxy keepalive", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      keepalive = -1\n    }\n  }\n"), 5, "Invalid keepalive"},
		{"proxy max_fails", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      max_fails = -1\n    }\n  }\n"), 5, "Invalid max_fails"},
		{"proxy fail_timeout", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      fail_timeout = \"0s\"\n    }\n  }\n"), 5, "Invalid fail_timeout"},
		{"proxy host", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      host = \"a b\"\n    }\n  }\n"), 5, "Invalid host"},
		{"proxy via", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      via = \"yes\"\n    }\n  }\n"), 5, "a bool is required"},
		{"proxy retry_body_buffer", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      retry_body_buffer = \"1GiB\"\n    }\n  }\n"), 5, "retry_body_buffer is at most 64MiB"},
		{"proxy keepalive_timeout", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      keepalive_timeout = \"0s\"\n    }\n  }\n"), 5, "Invalid keepalive_timeout"},
		{"proxy zero timeout", site("  route \"/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n      response_timeout = \"0s\"\n    }\n  }\n"), 5, "Invalid response_timeout"},
		{"status too low", site("  route \"/\" {\n    respond {\n      status = 99\n    }\n  }\n"), 4, "Invalid status code; The status 99 is not a final HTTP status code (200 to 599)."},
		{"status 1xx", site("  route \"/\" {\n    respond {\n      status = 101\n    }\n  }\n"), 4, "Invalid status code"},
		{"status too high", site("  route \"/\" {\n    respond {\n      status = 600\n    }\n  }\n"), 4, "Invalid status code"},
		{"body with 204", site("  route \"/\" {\n    respond {\n      status = 204\n      body = \"x\"\n    }\n  }\n"), 5, "A 204 response cannot have a body."},
		{"bad header name", site("  route \"/\" {\n    respond {\n      headers = {\n        \"X Y\" = \"1\"\n      }\n    }\n  }\n"), 5, `Invalid header name; The header name "X Y"`},
		{"framing header", site("  route \"/\" {\n    respond {\n      headers = {\n        \"content-length\" = \"1\"\n      }\n    }\n  }\n"), 5, "cannot be configured"},
		{"bad header value", site("  route \"/\" {\n    respond {\n      headers = {\n        X = \"a\\r\\nb\"\n      }\n    }\n  }\n"), 5, "contains CR, LF or NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), "test.hcl")
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			if len(cerr.Diags) != 1 {
				t.Errorf("got %d diagnostics, want 1:\n%s", len(cerr.Diags), err)
			}
			msg := err.Error()
			if prefix := fmt.Sprintf("test.hcl:%d:", tt.line); !strings.HasPrefix(msg, prefix) {
				t.Errorf("err = %q, want prefix %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("err = %q, want it to contain %q", msg, tt.want)
			}
			if s := cerr.Diags[0].Subject; s == nil || s.Start.Line != tt.line || s.Filename != "test.hcl" {
				t.Errorf("Subject = %+v, want test.hcl line %d", s, tt.line)
			}
		})
	}
}
