package wire

import (
	"bytes"
	"testing"
)

func TestParseRequestLine(t *testing.T) {
	const limit = 32
	for _, tc := range []struct {
		in             string
		method, target string
		major, minor   int
		n, st          int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n", "GET", "/", 1, 1, 16, 0},
		{"BREW /pot?x=1 HTTP/1.0\r\n", "BREW", "/pot?x=1", 1, 0, 24, 0},
		{"GET / HTTP/9.2\r\n", "GET", "/", 9, 2, 16, 0},
		{"OPTIONS * HTTP/1.1\r\n", "OPTIONS", "*", 1, 1, 20, 0},
		// Incomplete lines ask for more.
		{"", "", "", 0, 0, 0, NeedMore},
		{"GET", "", "", 0, 0, 0, NeedMore},
		{"GET /", "", "", 0, 0, 0, NeedMore},
		{"GET / HTTP/1.", "", "", 0, 0, 0, NeedMore},
		{"GET / HTTP/1.1\r", "", "", 0, 0, 0, NeedMore},
		// Syntax errors are refused as soon as a byte shows them.
		{"GET  / HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{" GET / HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{"G(T / HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{"GET /a\tb HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{"GET /a#b HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{"GET /\xc3\xa9 HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		{"GET / http/1.1\r\n", "", "", 0, 0, 0, 400},
		{"GET / HTTP/1.10\r\n", "", "", 0, 0, 0, 400},
		{"GET / HTTP/1.1\n", "", "", 0, 0, 0, 400},
		{"GET / \r\n", "", "", 0, 0, 0, 400},
		{"GET / X", "", "", 0, 0, 0, 400},
		{"GET / HTTP\r\n", "", "", 0, 0, 0, 400},
		{"GET HTTP/1.1\r\n", "", "", 0, 0, 0, 400},
		// Over the limit: 414, also before the line is complete.
		{"GET /" + string(bytes.Repeat([]byte("a"), 40)) + " HTTP/1.1\r\n", "", "", 0, 0, 0, 414},
		{"GET /" + string(bytes.Repeat([]byte("a"), 40)), "", "", 0, 0, 0, 414},
	} {
		m, tg, major, minor, n, st := ParseRequestLine([]byte(tc.in), limit)
		if string(m) != tc.method || string(tg) != tc.target || major != tc.major || minor != tc.minor || n != tc.n || st != tc.st {
			t.Errorf("%q: %q %q %d.%d %d %d, want %q %q %d.%d %d %d", tc.in, m, tg, major, minor, n, st,
				tc.method, tc.target, tc.major, tc.minor, tc.n, tc.st)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct {
		in                string
		host, path, query string
		hasQuery, ok      bool
	}{
		{"/a/b?c=d", "", "/a/b", "c=d", true, true},
		{"/a?", "", "/a", "", true, true},
		{"/", "", "/", "", false, true},
		{"*", "", "*", "", false, true},
		{"http://x.org:8080?q", "x.org:8080", "", "q", true, true},
		{"https://[::1]/p", "[::1]", "/p", "", false, true},
		{"h2c+x-y.z://h/", "h", "/", "", false, true},
		{"a/b", "", "", "", false, false},
		{"http://u@a/", "", "", "", false, false},
		{"http:///x", "", "", "", false, false},
		{"1http://a/", "", "", "", false, false},
		{"http:/a", "", "", "", false, false},
		{"**", "", "", "", false, false},
		{"", "", "", "", false, false},
	} {
		host, path, query, ok := SplitTarget([]byte(tc.in))
		if string(host) != tc.host || string(path) != tc.path || string(query) != tc.query || (query != nil) != tc.hasQuery || ok != tc.ok {
			t.Errorf("%q: %q %q %q(%v) %v, want %q %q %q(%v) %v", tc.in, host, path, query, query != nil, ok,
				tc.host, tc.path, tc.query, tc.hasQuery, tc.ok)
		}
	}
}

// FuzzParseRequestLine checks that a complete line (one that has its LF)
// never asks for more bytes, and that an accepted line is exactly
// method SP target SP version CRLF.
func FuzzParseRequestLine(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", "GET / X\r\n", "GET / \r\n", "OPTIONS * HTTP/1.0\r\n", "GET http://a/?q HTTP/1.1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, tg, major, minor, n, st := ParseRequestLine(b, 1<<20)
		if st == NeedMore && bytes.IndexByte(b, '\n') >= 0 {
			t.Fatalf("%q: a complete line asks for more", b)
		}
		if st != 0 {
			return
		}
		line := string(m) + " " + string(tg) + " HTTP/" + string(rune('0'+major)) + "." + string(rune('0'+minor)) + "\r\n"
		if line != string(b[:n]) {
			t.Fatalf("%q: parsed as %q", b[:n], line)
		}
		if host, path, _, ok := SplitTarget(tg); ok && host == nil && len(path) == 0 {
			t.Fatalf("%q: an origin form without a path", tg)
		}
	})
}
