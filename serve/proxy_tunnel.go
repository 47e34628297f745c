package serve

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
)

// tunnel switches the client's connection to the upstream's after a 101:
// the response head goes to the client, then bytes are copied both ways
// until both sides have finished, the tunnel has been idle (no byte either
// way) for response_timeout, or the proxy is closed.
func (p *proxy) tunnel(w *protocol.ResponseWriter, b *backend, c *upstream.Conn, resp *upstream.Response) {
	// The upstream's socket first (a detached one takes a descriptor),
	// while the client can still be answered.
	uc, rest, err := c.Tunnel()
	if err != nil {
		p.logf(b, time.Now().UnixNano(), "upstream socket not taken for an upgrade", err)
		writeError(w, http.StatusBadGateway)
		return
	}
	defer uc.Close()
	cc, brw, err := w.Hijack()
	if err != nil {
		p.logger.Debug("hijack for an upgrade failed", "error", err)
		return
	}
	defer cc.Close()
	head := []byte("HTTP/1.1 101 Switching Protocols\r\n")
	for _, f := range resp.Fields {
		if httplex.EqualFold(f.Name, "Keep-Alive") || httplex.EqualFold(f.Name, "Transfer-Encoding") ||
			httplex.EqualFold(f.Name, "Content-Length") {
			continue
		}
		head = append(head, f.Name...)
		head = append(head, ": "...)
		head = append(head, f.Value...)
		head = append(head, "\r\n"...)
	}
	head = append(head, "\r\n"...)
	head = append(head, rest...)
	t := &tunnel{client: cc, upstream: uc, timeout: p.timeout}
	p.tmu.Lock()
	if p.closed {
		p.tmu.Unlock()
		return
	}
	if p.tunnels == nil {
		p.tunnels = make(map[*tunnel]struct{})
	}
	p.tunnels[t] = struct{}{}
	p.tmu.Unlock()
	defer func() {
		p.tmu.Lock()
		delete(p.tunnels, t)
		p.tmu.Unlock()
	}()
	t.moved()
	cc.SetWriteDeadline(time.Now().Add(p.timeout))
	if _, err := cc.Write(head); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Client to upstream, starting with what the server had read ahead.
		t.copy(uc, cc, brw.Reader)
	}()
	t.copy(cc, uc, uc)
	<-done
	if t.idle.Load() {
		p.logger.Debug("upgraded connection idle; closed", "upstream", b.addr, "timeout", p.timeout)
	}
}

// tunnel is an upgraded connection: the client's and the upstream's, and
// when a byte last went either way.
type tunnel struct {
	client, upstream net.Conn
	timeout          time.Duration // the longest both ways may be idle
	last             atomic.Int64  // unix nanoseconds of the last byte read
	idle             atomic.Bool   // ended for being idle
	once             sync.Once
}

func (t *tunnel) moved() { t.last.Store(time.Now().UnixNano()) }

// end closes both connections, which ends both copies.
func (t *tunnel) end() {
	t.once.Do(func() {
		t.client.Close()
		t.upstream.Close()
	})
}

// copy copies src (read through r) to dst until src ends, then half-closes
// dst. Each read waits at most until timeout after the last byte either way
// (nginx's proxy_read_timeout on an upgraded connection); a read that
// reaches its deadline while the other way has moved waits on, and one
// that finds both ways idle ends the tunnel. A write gets the timeout too.
func (t *tunnel) copy(dst, src net.Conn, r io.Reader) {
	buf := make([]byte, 16<<10)
	src.SetReadDeadline(time.Unix(0, t.last.Load()).Add(t.timeout))
	for {
		n, err := r.Read(buf)
		if n > 0 {
			t.moved()
			dst.SetWriteDeadline(time.Now().Add(t.timeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				t.end()
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			dl := time.Unix(0, t.last.Load()).Add(t.timeout)
			if time.Now().Before(dl) {
				src.SetReadDeadline(dl) // the other way moved: wait on
				continue
			}
			t.idle.Store(true)
			t.end()
			return
		case err == io.EOF:
			closeWrite(dst)
			return
		default:
			t.end()
			return
		}
	}
}

// closeWrite half-closes a connection, or closes it when it cannot.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
