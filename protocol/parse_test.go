package protocol

import (
	"strconv"
	"strings"
	"testing"

	"github.com/forkd/forkd/protocol/internal/wire"
)

// badRequests are heads every one of which must be refused with status.
var badRequests = []struct {
	name   string
	raw    string
	status int
}{
	{"missing host 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
	{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
	{"leading ws field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
	{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
	{"bare LF header", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400},
	{"bare LF end", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
	{"bare CR line end", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400},
	{"ctl in target", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"no target", "GET HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"star not options", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"lower version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	{"bad version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
	{"long version", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
	{"bad field name", "GET / HTTP/1.1\r\nHost: a\r\nX(: b\r\n\r\n", 400},
	{"empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nXb\r\n\r\n", 400},
	{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"cl not number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400},
	{"cl negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
	{"cl empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
	{"cl plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400},
	{"cl differs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
	{"cl repeated", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
	{"cl list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400},
	{"te and cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"te twice chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
	{"te empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400},
	{"te on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	{"te gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	{"te chunked gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
	{"te identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400},
	{"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
	{"http 2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"short version", "GET / \r\n\r\n", 400},
	{"short version HTTP", "GET / HTTP\r\n\r\n", 400},
	{"short version X", "GET / X\r\n\r\n", 400},
	{"short version digits", "GET / HTTP/1\r\n\r\n", 400},
	{"http 9.1", "GET / HTTP/9.1\r\nHost: a\r\n\r\n", 505},
	{"http 0.9", "GET / HTTP/0.9\r\n\r\n", 505},
	{"expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", 417},
	{"too many empty lines", strings.Repeat("\r\n", 5) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"cl over limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n", 413},
	{"cl overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
	{"request line too long", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
	{"headers too big", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 600) + "\r\n\r\n", 431},
	{"tls client hello", "\x16\x03\x01\x00\xf1\x01\x00\x00\xed\x03\x03\r\n\r\n", 400},
	{"control byte first", "\x01GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"space first", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: a\r\n", 10) + "\r\n", 431},
}

var goodRequests = []struct {
	name                string
	raw                 string
	method, path, query string
	host                string
	close               bool
	cl                  int64
}{
	{"get", "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/a/b", "c=d", "example.com", false, 0},
	{"empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a", "", "h", false, 0},
	{"1.0", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "", "", true, 0},
	{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", "", "", false, 0},
	{"1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", "GET", "/", "", "h", true, 0},
	{"absolute", "GET http://x.org:8080?q HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "/", "q", "x.org:8080", false, 0},
	{"absolute path", "GET https://[::1]/p HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "/p", "", "[::1]", false, 0},
	{"options star", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "", "h", false, 0},
	{"http 1.2 as 1.1", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET", "/", "", "h", false, 0},
	{"unknown method", "BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", "BREW", "/pot", "", "h", false, 0},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", "h", false, 0},
	{"cl", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0012\r\n\r\n", "POST", "/", "", "h", false, 12},
	{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", "POST", "/", "", "h", false, -1},
	{"ows and obs-text", "GET / HTTP/1.1\r\nHost:h\r\nX: \t a\xffb \t\r\n\r\n", "GET", "/", "", "h", false, 0},
	{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "", "", false, 0},
}

func testLimits() Limits {
	l := withDefaults(Limits{RequestLine: 256, HeaderBytes: 512, HeaderCount: 8, BodyBytes: 1024})
	return l
}

func TestParseRequestRejects(t *testing.T) {
	lim := testLimits()
	for _, tc := range badRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			_, st := parseRequest(&r, []byte(tc.raw), &lim)
			if st != tc.status {
				t.Errorf("status %d, want %d", st, tc.status)
			}
		})
	}
}

func TestParseRequestAccepts(t *testing.T) {
	lim := testLimits()
	for _, tc := range goodRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, st := parseRequest(&r, []byte(tc.raw+"rest"), &lim)
			if st != 0 {
				t.Fatalf("status %d", st)
			}
			if n != len(tc.raw) {
				t.Errorf("consumed %d, want %d", n, len(tc.raw))
			}
			got := []string{string(r.Method), string(r.Path), string(r.Query), string(r.Host), strconv.FormatBool(r.Close), strconv.FormatInt(r.ContentLength, 10)}
			want := []string{tc.method, tc.path, tc.query, tc.host, strconv.FormatBool(tc.close), strconv.FormatInt(tc.cl, 10)}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestParseRequestQueryNil(t *testing.T) {
	lim := testLimits()
	var r Request
	if _, st := parseRequest(&r, []byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"), &lim); st != 0 || r.Query != nil {
		t.Fatalf("status %d query %q", st, r.Query)
	}
	if v := r.Header.Get("HOST"); string(v) != "h" {
		t.Fatalf("Get(HOST) = %q", v)
	}
}

// TestParseRequestIncomplete checks that every proper prefix of a valid head
// asks for more input rather than failing.
func TestParseRequestIncomplete(t *testing.T) {
	lim := testLimits()
	raw := "\r\nPOST /x?y HTTP/1.1\r\nHost: h\r\nX: a b \r\nContent-Length: 5\r\n\r\n"
	for i := 0; i < len(raw); i++ {
		var r Request
		if _, st := parseRequest(&r, []byte(raw[:i]), &lim); st != statusNeedMore {
			t.Fatalf("prefix %q: status %d", raw[:i], st)
		}
	}
}

// TestParseRequestFirstByte: a head is refused at its first byte when no
// request can begin with it, before the head ends; any other first byte
// asks for more.
func TestParseRequestFirstByte(t *testing.T) {
	lim := testLimits()
	for c := 0; c < 256; c++ {
		var r Request
		_, st := parseRequest(&r, []byte{byte(c)}, &lim)
		want := statusNeedMore
		if !wire.CanStartRequest(byte(c)) {
			want = 400
		}
		if st != want {
			t.Errorf("first byte %#02x: status %d, want %d", c, st, want)
		}
	}
	for _, c := range []byte{0x16, 0x00, '\n', ' ', 0x80, 0xff} {
		if wire.CanStartRequest(c) {
			t.Errorf("CanStartRequest(%#02x)", c)
		}
	}
	for _, c := range []byte{'G', 'P', 'a', '\r', '!', '~'} {
		if !wire.CanStartRequest(c) {
			t.Errorf("!CanStartRequest(%q)", c)
		}
	}
}
