package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// memConn is a net.Conn over fixed input; output is collected.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error)         { return m.in.Read(p) }
func (m *memConn) Write(p []byte) (int, error)        { return m.out.Write(p) }
func (m *memConn) Close() error                       { return nil }
func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

// parsed is what both parsers must agree on.
type parsed struct {
	method, target, host string
	header               []string // "name: value", names canonical, sorted
	body                 string
	trailer              []string
}

// parseOurs runs raw through the connection's real head and body path.
func parseOurs(raw string) (parsed, int) {
	s := &Server{Handler: hello}
	s.init()
	defer s.Close()
	c := newConn(s)
	c.init(&memConn{in: bytes.NewReader([]byte(raw))})
	if st := c.readHead(); st != 0 {
		if st < 0 {
			st = 400 // truncated head
		}
		return parsed{}, st
	}
	c.body.reset(&c.req)
	c.resp.reset(&c.req)
	body, err := io.ReadAll(&c.body)
	if err != nil {
		return parsed{}, c.body.status
	}
	p := parsed{method: string(c.req.Method), target: string(c.req.Target), host: string(c.req.Host), body: string(body)}
	for i := 0; i < c.req.Header.Len(); i++ {
		f := c.req.Header.At(i)
		k := http.CanonicalHeaderKey(string(f.Name))
		if k == "Host" || k == "Transfer-Encoding" || k == "Trailer" {
			continue // net/http moves these out of Header
		}
		p.header = append(p.header, k+": "+string(f.Value))
	}
	sort.Strings(p.header)
	for i := 0; i < c.req.Trailer.Len(); i++ {
		f := c.req.Trailer.At(i)
		p.trailer = append(p.trailer, http.CanonicalHeaderKey(string(f.Name))+": "+string(f.Value))
	}
	sort.Strings(p.trailer)
	return p, 0
}

// parseNetHTTP is http.ReadRequest plus the checks net/http's server adds
// (Host required on 1.1, valid Host, HTTP/1.x only, Expect).
func parseNetHTTP(raw string) (parsed, error) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return parsed{}, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return parsed{}, err
	}
	if req.ProtoMajor != 1 {
		return parsed{}, fmt.Errorf("505")
	}
	// ReadRequest drops the Host field; the server checks it before that.
	head, _, _ := strings.Cut(strings.ToLower(raw), "\r\n\r\n")
	if hosts := strings.Count(head, "\nhost:"); req.ProtoAtLeast(1, 1) && hosts == 0 {
		return parsed{}, fmt.Errorf("missing host")
	}
	if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
		return parsed{}, fmt.Errorf("417")
	}
	p := parsed{method: req.Method, target: req.RequestURI, host: req.Host, body: string(body)}
	for k, vs := range req.Header {
		if k == "Host" {
			continue
		}
		for _, v := range vs {
			p.header = append(p.header, k+": "+v)
		}
	}
	sort.Strings(p.header)
	for k, vs := range req.Trailer {
		for _, v := range vs {
			p.trailer = append(p.trailer, k+": "+v)
		}
	}
	sort.Strings(p.trailer)
	return p, nil
}

// divergences are inputs where we are deliberately stricter than
// net/http; each says why.
var divergences = map[string]string{
	"obs-fold":             "RFC 9112 §5.2 lets a server refuse obs-fold; net/http unfolds",
	"bare LF request line": "RFC 9112 §2.2 lets us refuse bare LF; we do",
	"bare LF header":       "same: CRLF only",
	"bare LF end":          "same: CRLF only",
	"non-ascii target":     "RFC 3986 has no non-ASCII; net/http passes it on",
	"fragment in target":   "a fragment is not part of a request-target (RFC 9112 §3.2)",
	"star not options":     "RFC 9112 §3.2.4: asterisk-form is for OPTIONS only",
	"userinfo":             "RFC 9110 §4.2.4: userinfo must be treated as an error",
	"empty authority":      "an http(s) URI needs a host",
	"te on 1.0":            "RFC 9112 §6.1: faulty framing; net/http ignores TE on 1.0",
	"connect":              "CONNECT is refused with 501: no tunnels",
	"leading CRLF":         "RFC 9112 §2.2: we skip empty lines before the request line",
	"bad host":             "net/http checks Host inside its server, after ReadRequest",
	"host slash":           "same",
	"bad chunk ext":        "net/http ignores chunk extensions entirely",
	"chunk size space":     "RFC 9112 §7.1.1 has no whitespace after chunk-size without ';'",
}

// extraRequests add bodies and edge cases to the shared corpora.
var extraRequests = []struct{ name, raw string }{
	{"chunked body", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"},
	{"chunked trailer", "POST /c HTTP/1.1\r\nHost: a\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: 1\r\n\r\n"},
	{"chunk ext", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nz\r\n0\r\n\r\n"},
	{"bad chunk ext", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;=\r\nz\r\n0\r\n\r\n"},
	{"chunk size space", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nz\r\n0\r\n\r\n"},
	{"bad chunk size", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nq\r\nz\r\n0\r\n\r\n"},
	{"truncated body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"},
	{"cl body", "PUT /p?q=1 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 4\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody"},
	{"1.0 body", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"},
	{"percent", "GET /a%20b?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx"},
}

func TestDifferentialNetHTTP(t *testing.T) {
	type input struct{ name, raw string }
	var corpus []input
	for _, tc := range badRequests {
		corpus = append(corpus, input{tc.name, tc.raw})
	}
	for _, tc := range goodRequests {
		corpus = append(corpus, input{tc.name, tc.raw})
	}
	for _, tc := range extraRequests {
		corpus = append(corpus, input{tc.name, tc.raw})
	}
	for _, in := range corpus {
		t.Run(in.name, func(t *testing.T) {
			ours, st := parseOurs(in.raw)
			theirs, err := parseNetHTTP(in.raw)
			if st == 413 || st == 414 || st == 431 {
				t.Skip("limit, not syntax")
			}
			if (st == 0) != (err == nil) {
				if why, ok := divergences[in.name]; ok {
					t.Skipf("deliberate divergence (ours %d, net/http %v): %s", st, err, why)
				}
				t.Fatalf("ours: status %d; net/http: %v", st, err)
			}
			if st != 0 {
				return
			}
			if why, ok := divergences[in.name]; ok && fmt.Sprint(ours) != fmt.Sprint(theirs) {
				t.Skipf("deliberate divergence: %s", why)
			}
			if fmt.Sprint(ours) != fmt.Sprint(theirs) {
				t.Fatalf("\nours:     %+v\nnet/http: %+v", ours, theirs)
			}
		})
	}
}
