package serve

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/testcert"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
)

// testTimeout bounds every wait in these tests; it is a deadline against
// hangs, not a timing assertion.
const testTimeout = 20 * time.Second

// startServer serves h on a loopback listener with forkd's protocol and
// returns the address.
func startServer(t testing.TB, h protocol.Handler, logf protocol.LogFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveWith(t, h, ln, protocol.ListenOptions{}, logf)
}

// serveListener serves h on ln and returns its address.
func serveListener(t testing.TB, h protocol.Handler, ln net.Listener) string {
	t.Helper()
	return serveWith(t, h, ln, protocol.ListenOptions{}, nil)
}

// serveWith serves h on ln with o and returns its address.
func serveWith(t testing.TB, h protocol.Handler, ln net.Listener, o protocol.ListenOptions, logf protocol.LogFunc) string {
	t.Helper()
	lim := protocol.DefaultLimits()
	lim.BodyBytes = 256 << 20
	srv := &protocol.Server{Handler: h, Limits: lim, Logger: hclog.NewNullLogger(), Log: logf}
	runServer(t, srv, ln, o)
	return ln.Addr().String()
}

// runServer serves srv on ln with o until the test ends.
func runServer(t testing.TB, srv *protocol.Server, ln net.Listener, o protocol.ListenOptions) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeWith(ln, o)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		// Close cuts the connections but does not wait for their
		// goroutines; wait until every one has left the handler, so that
		// a handler closed after this (Cleanup runs last-in first-out)
		// does not race with a request still in it.
		deadline := time.Now().Add(testTimeout)
		for srv.Stats().OpenConns > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
}

// testCertificate is a certificate for "example.com" and 127.0.0.1 from a
// throwaway CA.
func testCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"example.com", "127.0.0.1"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newHandler builds the serve handler for sites and closes it after the test.
func newHandler(t testing.TB, sites []config.Site, opts Options) protocol.Handler {
	t.Helper()
	h, err := New(&config.Config{Sites: sites}, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if c, ok := h.(io.Closer); ok {
			_ = c.Close()
		}
	})
	return h
}

// rawResponse is a response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawRequest sends req byte for byte (no client cleans anything) and reads
// one response; method tells the reader whether a body follows.
func rawRequest(t testing.TB, addr, method, req string) rawResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return readRaw(t, conn, method, req)
}

// readRaw sends req on conn, reads one response and closes conn.
func readRaw(t testing.TB, conn net.Conn, method, req string) rawResponse {
	t.Helper()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response to %q: %v", req, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of response to %q: %v", req, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get sends "METHOD target" with extra header lines over a raw connection.
func get(t testing.TB, addr, method, target string, headers ...string) rawResponse {
	t.Helper()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return rawRequest(t, addr, method, b.String())
}

// httpClient is a client with its own transport, closed after the test.
func httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout * 3,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
