package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testserver"
)

// TestProxyStrayResponse drives a real master (one worker, so one pool per
// upstream) whose proxy routes lead to upstreams that send a second,
// labelled response 50 to 800 ms after each answer, on the same connection
// (issue 25): after a Content-Length body, as the body of a HEAD answer,
// after a 204 or a 304. For each pair of clients, on client connections of
// their own, client B asks once the upstream has sent the stray bytes
// after client A's answer; each must read its own exchange's response.
// Each pair has a route and an upstream of its own, so that the pairs run
// at once without one taking a connection whose stray bytes are still to
// come. The worker logs (at debug level) the connections it closed.
func TestProxyStrayResponse(t *testing.T) {
	const pairs = 20
	variants := []struct {
		method string
		status int
		answer func(label string, stray int) string
	}{
		{"GET", 200, func(l string, _ int) string {
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n%s", len(l), l, l)
		}},
		{"HEAD", 200, func(l string, n int) string {
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n", n, l)
		}},
		{"GET", 204, func(l string, _ int) string { return "HTTP/1.1 204 No Content\r\nX-Label: " + l + "\r\n\r\n" }},
		{"GET", 304, func(l string, _ int) string { return "HTTP/1.1 304 Not Modified\r\nX-Label: " + l + "\r\n\r\n" }},
	}
	quit := make(chan struct{})
	strayed := make([]chan string, pairs)
	routes := map[string]string{}
	for i := range pairs {
		v := variants[i%len(variants)]
		delay := 50*time.Millisecond + time.Duration(i*7919%751)*time.Millisecond
		ch := make(chan string, 4)
		strayed[i] = ch
		u := newRawProxyUpstream(t, func(c net.Conn, req *http.Request) bool {
			label := strings.ReplaceAll(strings.Trim(req.URL.Path, "/"), "/", "-")
			s := "stray-from-" + label
			late := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Label: %s\r\n\r\n%s", len(s), s, s)
			if _, err := io.WriteString(c, v.answer(label, len(late))); err != nil {
				return false
			}
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-quit:
				timer.Stop()
				return false
			}
			if _, err := io.WriteString(c, late); err != nil || !testserver.Acked(c.(*net.TCPConn), quit, clientTimeout) {
				return false
			}
			select {
			case ch <- label:
			default:
			}
			return true
		})
		routes[fmt.Sprintf("/s%d/", i)] = strconv.Quote(u.addr)
	}
	t.Cleanup(func() { close(quit) }) // before the upstreams wait for their connections
	s := start(t, opts{workers: 1, sites: proxySites(routes, "")})

	var wg sync.WaitGroup
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := variants[i%len(variants)]
			for _, who := range []string{"a", "b"} {
				if who == "b" {
					select {
					case <-strayed[i]:
					case <-time.After(clientTimeout):
						t.Errorf("pair %d: the upstream sent no stray bytes", i)
						return
					}
				}
				want := fmt.Sprintf("s%d-%s", i, who)
				st, got, err := labelled(s.addr, v.method, fmt.Sprintf("/s%d/%s", i, who))
				if err != nil || st != v.status || got != want {
					t.Errorf("pair %d, client %s: %d %q %v, want %d %q", i, who, st, got, err, v.status, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.seen(`upstream sent bytes on an idle connection`, clientTimeout)
}

// labelled does one request on a client connection of its own and returns
// the status and the response's X-Label (and body, which must agree).
func labelled(addr, method, path string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(clientTimeout))
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
	l := resp.Header.Get("X-Label")
	if len(b) > 0 && string(b) != l {
		return resp.StatusCode, "", fmt.Errorf("label %q, body %q", l, b)
	}
	return resp.StatusCode, l, nil
}
