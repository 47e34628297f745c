package serve

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/testserver"
)

// strayCase is how a hostile upstream answers a request before, 50 to 800
// ms later, it sends a second complete response on the same connection:
// the stray bytes are a body on a HEAD answer, a body after a 204 or 304,
// or bytes past a Content-Length body.
type strayCase struct {
	name   string
	method string // of the clients' requests
	status int
	// answer is the upstream's answer to the request labelled label;
	// stray is what it sends late.
	answer func(label string, stray int) string
}

var strayCases = []strayCase{
	{"after length", "GET", 200, func(label string, _ int) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n%s", len(label), label, label)
	}},
	{"head body", "HEAD", 200, func(label string, stray int) string {
		// The late bytes are the body this head announces.
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n", stray, label)
	}},
	{"no content body", "GET", 204, func(label string, _ int) string {
		return fmt.Sprintf("HTTP/1.1 204 No Content\r\nX-Label: %s\r\n\r\n", label)
	}},
	{"not modified body", "GET", 304, func(label string, _ int) string {
		return fmt.Sprintf("HTTP/1.1 304 Not Modified\r\nX-Label: %s\r\n\r\n", label)
	}},
}

// strayResponse is the late response that follows the answer to label.
func strayResponse(label string) string {
	l := "stray-from-" + label
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n%s", len(l), l, l)
}

// strayUpstream answers each request (its label is the path's last two
// segments, "p7-a" for /p7/a) as tc says, then after delay writes
// strayResponse on the same connection and, once the proxy's side has
// acknowledged those bytes, sends the label on strayed.
func strayUpstream(t *testing.T, tc strayCase, delay time.Duration, quit chan struct{}, strayed chan string) string {
	return requestUpstream(t, func(c net.Conn, _ *bufio.Reader, req *http.Request) bool {
		label := strings.ReplaceAll(strings.Trim(req.URL.Path, "/"), "/", "-")
		late := strayResponse(label)
		if _, err := io.WriteString(c, tc.answer(label, len(late))); err != nil {
			return false
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-quit:
			timer.Stop()
			return false
		}
		if _, err := io.WriteString(c, late); err != nil {
			return false // the proxy closed the connection
		}
		if !testserver.Acked(c.(*net.TCPConn), quit, testTimeout) {
			return false
		}
		select {
		case strayed <- label:
		default:
		}
		return true
	})
}

// exchangeLabel sends one request on a client connection of its own and
// returns the response's status and label (its X-Label, and for a body
// the body, which must agree).
func exchangeLabel(addr, method, path string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: example.com\r\n\r\n", method, path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	label := resp.Header.Get("X-Label")
	if len(b) > 0 && string(b) != label {
		return resp.StatusCode, "", fmt.Errorf("label %q, body %q", label, b)
	}
	return resp.StatusCode, label, nil
}

// TestProxyStrayBytesNotReused: a hostile upstream answers each request
// and, 50 to 800 ms later, sends a second, labelled response on the same
// connection. For 100 pairs of clients, each on a client connection of its
// own, client B's request goes out once the upstream has sent the stray
// bytes after client A's answer: each client must read its own exchange's
// response, never the stray one. Each pair has a route and an upstream of
// its own, so that the pairs can run at once without one pair's request
// taking a connection whose stray bytes are still to come.
func TestProxyStrayBytesNotReused(t *testing.T) {
	const pairs = 100
	for _, tc := range strayCases {
		t.Run(tc.name, func(t *testing.T) {
			quit := make(chan struct{})
			strayed := make([]chan string, pairs)
			var routes []config.Route
			for i := range pairs {
				strayed[i] = make(chan string, 4)
				// A deterministic spread over 50..800 ms.
				delay := 50*time.Millisecond + time.Duration(i*7919%751)*time.Millisecond
				up := strayUpstream(t, tc, delay, quit, strayed[i])
				routes = append(routes, config.Route{Prefix: fmt.Sprintf("/p%d/", i), Proxy: &config.Proxy{
					Upstreams: []string{up}, Keepalive: config.DefaultKeepalive,
					RetryBodyBuffer: config.DefaultRetryBodyBuffer,
				}})
			}
			t.Cleanup(func() { close(quit) }) // before the upstreams wait for their connections
			h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: routes}}, Options{})
			addr := startServer(t, h, nil)

			var crossed atomic.Int32
			var wg sync.WaitGroup
			for i := range pairs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := fmt.Sprintf("p%d-a", i)
					st, got, err := exchangeLabel(addr, tc.method, fmt.Sprintf("/p%d/a", i))
					if err != nil || st != tc.status || got != a {
						crossed.Add(1)
						t.Errorf("pair %d, client A: %d %q %v, want %d %q", i, st, got, err, tc.status, a)
						return
					}
					select {
					case l := <-strayed[i]:
						if l != a {
							t.Errorf("pair %d: stray bytes after %q, want after %q", i, l, a)
							return
						}
					case <-time.After(testTimeout):
						t.Errorf("pair %d: the upstream sent no stray bytes", i)
						return
					}
					b := fmt.Sprintf("p%d-b", i)
					st, got, err = exchangeLabel(addr, tc.method, fmt.Sprintf("/p%d/b", i))
					if err != nil || st != tc.status || got != b {
						crossed.Add(1)
						t.Errorf("pair %d, client B: %d %q %v, want %d %q", i, st, got, err, tc.status, b)
					}
				}()
			}
			wg.Wait()
			if n := crossed.Load(); n > 0 {
				t.Errorf("%d of %d pairs read another exchange's bytes", n, pairs)
			}
		})
	}
}
