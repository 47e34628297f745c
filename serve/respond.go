package serve

import (
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// respond sends one fixed response, whatever the method.
type respond struct {
	status  int
	body    []byte
	headers [][2]string // sorted by name, for a stable order
	length  int64
}

func newRespond(c *config.Respond) *respond {
	rs := &respond{status: c.Status, body: []byte(c.Body), length: int64(len(c.Body))}
	if rs.status == 0 {
		rs.status = 200
	}
	hasType := false
	for k, v := range c.Headers {
		rs.headers = append(rs.headers, [2]string{k, v})
		if http.CanonicalHeaderKey(k) == "Content-Type" {
			hasType = true
		}
	}
	sort.Slice(rs.headers, func(i, j int) bool { return rs.headers[i][0] < rs.headers[j][0] })
	if !hasType && len(rs.body) > 0 {
		rs.headers = append(rs.headers, [2]string{"Content-Type", "text/plain; charset=utf-8"})
	}
	return rs
}

func (rs *respond) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, _ *reqPath) {
	h := w.Header()
	for _, kv := range rs.headers {
		h.Set(kv[0], kv[1])
	}
	if bodyAllowed(rs.status) {
		w.SetContentLength(rs.length)
	}
	w.WriteHeader(rs.status)
	if len(rs.body) > 0 && bodyAllowed(rs.status) && string(r.Method) != "HEAD" {
		_, _ = w.Write(rs.body)
	}
}

// bodyAllowed reports whether a response with this status may carry a body
// (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// writeError sends a short plain-text body for status: "404 Not Found\n".
// It never includes anything from the request.
func writeError(w *protocol.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	var buf [64]byte
	b := strconv.AppendInt(buf[:0], int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, '\n')
	w.SetContentLength(int64(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// welcomePage is the built-in page at "/" when nothing is configured.
const welcomePage = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>forkd</title></head>
<body>
<h1>forkd is running</h1>
<p>This is the built-in welcome page of the forkd HTTP server. Configure
<code>site</code> blocks in config.hcl to serve your own content.</p>
</body>
</html>
`

// welcomeHandler serves the welcome page at "/" and a health route at
// /healthz ("ok", 503 while draining); other paths are 404 and methods
// other than GET and HEAD 405.
func welcomeHandler(draining *atomic.Bool) protocol.Handler {
	page := &respond{status: 200, body: []byte(welcomePage), length: int64(len(welcomePage)),
		headers: [][2]string{{"Content-Type", "text/html; charset=utf-8"}}}
	health := newHealth(draining)
	return protocol.Nonblocking(protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		var rs routeHandler
		switch string(r.Path) {
		case "/":
			rs = page
		case "/healthz":
			rs = health
		default:
			writeError(w, 404)
			return
		}
		if m := string(r.Method); m != "GET" && m != "HEAD" {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, 405)
			return
		}
		rs.serveRoute(w, r, nil)
	}))
}
