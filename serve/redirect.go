package serve

import (
	"fmt"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// redirect answers every request with a redirection built from a location
// template (see template for the placeholders).
type redirect struct {
	status   int
	location *template
}

func newRedirect(c *config.Redirect) (*redirect, error) {
	rd := &redirect{status: c.Status}
	if rd.status == 0 {
		rd.status = config.DefaultRedirectStatus
	}
	loc, err := newTemplate(c.Location)
	if err != nil {
		return nil, fmt.Errorf("redirect: location: %w", err)
	}
	rd.location = loc
	return rd, nil
}

func (rd *redirect) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	var buf [256]byte
	w.Header().SetBytes("Location", rd.location.appendTo(buf[:0], r, p))
	w.SetContentLength(0)
	w.WriteHeader(rd.status)
}
