package serve

import (
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/forkd/forkd/protocol"
)

// errorPage is one page of a site's error_pages, read when the routes
// are built (start and reload), never from disk per request.
type errorPage struct {
	body  []byte
	ctype string
}

// errorPages replaces the body of an error response with the site's page
// for its status, keeping the status: forkd's own errors (writeError's
// short text) and errors that came without a body (an upstream's bare
// 502). A response whose head already went out, or that carries a body
// of its own, is left alone.
type errorPages struct {
	pages map[int]*errorPage
	next  routeHandler
}

// readErrorPages reads a site's error pages; nil when there are none.
func readErrorPages(pages map[string]string) (map[int]*errorPage, error) {
	if len(pages) == 0 {
		return nil, nil
	}
	out := make(map[int]*errorPage, len(pages))
	for code, path := range pages {
		n, err := strconv.Atoi(code)
		if err != nil || n < 400 || n > 599 {
			return nil, fmt.Errorf("error_pages: bad status %q", code)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("error_pages: %w", err)
		}
		out[n] = &errorPage{body: b, ctype: contentType(path)}
	}
	return out, nil
}

// keptOnErrorPage are the fields of an error response that still apply
// with the page in place of its body.
var keptOnErrorPage = [...]string{"WWW-Authenticate", "Allow", "Retry-After", "Location"}

func (e *errorPages) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	e.next.serveRoute(w, r, p)
	status := w.Status()
	page := e.pages[status]
	if page == nil {
		return
	}
	if n := w.BytesWritten(); n != 0 && n != int64(errorTextLen(status)) {
		return // a body of the handler's (or the upstream's) own
	}
	var kept [len(keptOnErrorPage)]string
	for i, name := range keptOnErrorPage {
		kept[i] = w.Header().Get(name)
	}
	if !w.Reset() {
		return // the head is out
	}
	h := w.Header()
	for i, name := range keptOnErrorPage {
		if kept[i] != "" {
			h.Set(name, kept[i])
		}
	}
	h.Set("Content-Type", page.ctype)
	w.SetContentLength(int64(len(page.body)))
	w.WriteHeader(status)
	_, _ = w.Write(page.body)
}

// errorTextLen is the length of writeError's body for status.
func errorTextLen(status int) int {
	return len(strconv.Itoa(status)) + 1 + len(http.StatusText(status)) + 1
}
