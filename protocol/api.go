// Package protocol is forkd's HTTP/1.1 wire protocol: a strict request parser
// (RFC 9112), a response writer, and the per-connection loop with its limits,
// timeouts and graceful drain. It is independent of the rest of forkd: a
// Server serves a Handler on any net.Listener.
//
// The byte-level syntax (byte classes, the request line and the forms of
// its target, field lines, chunk-size lines, the version) lives in
// protocol/internal/wire, which knows nothing of connections; what HTTP/1.1
// makes of it (Request, the limits, the framing of a body) and the
// connections are here.
//
// This file is the package's public contract; other packages (serve, worker,
// the embedding API) are written against exactly these names.
//
// # Strictness
//
// The parser refuses what RFC 9112 allows it to refuse, and answers with a
// short fixed body and Connection: close, then closes the connection:
//
//   - Lines end in CRLF only; a bare LF or a bare CR is a 400.
//   - The request line has exactly one SP between its three parts; the
//     target is visible ASCII without '#' (no control bytes, no non-ASCII).
//     Origin-form, absolute-form (its authority becomes Host; userinfo is
//     refused) and "*" for OPTIONS are accepted; OPTIONS * is answered by
//     the server (200 with Allow), never by the Handler. CONNECT is answered with
//     501: forkd is not a proxy.
//   - HTTP/1.x only: a later 1.x (HTTP/1.2) is served as HTTP/1.1 (RFC 9112
//     §2.3); any other major version is a 505. A version that cannot be
//     "HTTP/d.d" is a 400 as soon as the line shows it.
//   - Up to four empty lines before a request line are ignored (RFC 9112 §2.2).
//   - Header names are tokens; whitespace before the colon, obs-fold, and
//     control bytes other than HTAB in values are 400s.
//   - HTTP/1.1 needs exactly one Host; a Host value must be authority bytes.
//   - Content-Length must be one decimal number in one field: repeats, even
//     identical ones, and lists ("5, 5") are 400s.
//   - Transfer-Encoding with Content-Length, or in an HTTP/1.0 request, is a
//     400. The only transfer coding is a single, final "chunked": a list
//     without it last, or with it twice, is a 400 (RFC 9112 §6.3: the body
//     length is unknown); another coding before it is a 501.
//   - Chunk sizes are hex, extensions must be well formed (and are ignored),
//     and trailers follow the header rules.
//   - An Expect other than 100-continue is a 417.
//   - 414 for a request line over Limits.RequestLine, 431 for fields over
//     Limits.HeaderBytes or Limits.HeaderCount (trailers too), 413 for a
//     Content-Length over Limits.BodyBytes (before the handler runs) or for
//     chunks that add up to more (while the handler reads them; the
//     handler's response is then replaced unless it already sent its head
//     or chose a 4xx/5xx status itself), 408 when a request has started but
//     its head is not in within Limits.ReadHeaderTimeout.
//
// # Connections
//
// A connection waits Limits.ReadHeaderTimeout for its first request and
// Limits.IdleTimeout between requests, then closes silently. Body reads wait
// at most Limits.IdleTimeout each. To keep deadlines cheap, a deadline that
// is already at least 3/4 of its timeout ahead is not moved, so an idle or
// write timeout may strike up to a quarter early.
//
// Pipelined requests are answered in order, and their responses are
// batched into one write until the server would block: before every read
// that can wait (a head, or a request body not yet in) and when a handler
// calls ResponseWriter.WillBlock, what is queued goes out.
//
// On sockets the keep-alive loop runs inside one syscall.RawConn read
// callback and reads and writes with nonblocking raw syscalls: after a read
// that came back short it waits for the poller rather than first making a
// read that would fail with EAGAIN, which saves a third of the syscalls of
// a keep-alive request. A handler then runs inside the callback only when
// its request body is already buffered; otherwise the request is served
// outside it, like connections that are not sockets. A Hijack inside the
// callback returns a duplicate descriptor of the socket.
//
// # Event loops
//
// A Server runs one event loop per GOMAXPROCS but one (with GOMAXPROCS=1,
// one loop), each with an epoll instance of its own, and a socket waits on
// one for its bytes instead of holding a goroutine. When the Handler
// implements LoopSafe, the loop serves the ready connections inline in the
// order the kernel reports them, the way an nginx worker does. Go's poller
// wakes the goroutines of ready connections in reverse order, so under
// load some requests wait two rounds and others none; a loop keeps service
// FIFO, which on one core cut the p99 latency of 256 keep-alive clients by
// about a quarter, to nginx's. A loop that stays busy yields between
// batches.
//
// The loops accept too: each holds the Server's listeners in its epoll
// with EPOLLEXCLUSIVE, so a new connection wakes one loop of one of the
// processes sharing the listener, and that loop accepts it with accept4(2)
// and serves it on the same thread, with no hand-off. A connection gets a
// net.Conn (a duplicate descriptor) only when it leaves its loop. Each loop
// waits in epoll_wait(2) itself, in the kernel, which EPOLLEXCLUSIVE
// needs; the P left over runs every goroutine that is not on a loop at
// once, instead of after the runtime took a sleeping loop's P away. With
// GOMAXPROCS=1 the loop waits in the runtime's poller instead, where
// EPOLLEXCLUSIVE has no effect, so Serve's goroutine waits for the
// listener itself, in the kernel, and hands each connection to the loop.
// forkd's workers get one P more than their share of the CPUs
// (WorkerProcs), unless their requests mostly run on goroutines (a proxy
// route behind error_pages or compress, an application that is not
// LoopSafe; ProcsOnGoroutines): a P more
// than the CPUs lengthens the latency tail of goroutines. procs.go has the
// whole policy.
//
// A connection leaves its loop for a goroutine of its own whenever serving
// it could wait: its handler is not LoopSafe (an embedded net/http app, a
// proxied route), its request body is not buffered yet, the socket does not
// take a response at once (a large body, sendfile), or the handler calls
// ResponseWriter.WillBlock or Hijack; lingering closes stay on the loop. A
// socket's connection that then waits parkDelay (50 ms) for its next
// request with nothing buffered or queued goes back to waiting on a loop,
// without its goroutine or buffers (backToLoop); a busy connection stays
// on its goroutine and pays nothing for the round trip. A hijacked
// connection never comes back, nor does one that is not a socket (TLS
// over a socket, pipes: their net.Conn holds state of its own), which
// keeps its goroutine. If that happens inside the handler, the goroutine
// running the loop stays with the connection and a new goroutine carries on
// with the loop, so other connections never wait for it.
//
// A handler that waits for another socket need not leave, though: it may
// suspend its request (ResponseWriter.Suspend), return, and resume it from
// a loop event (Suspended.Resume), typically one of a socket it watches on
// the same loop (SocketWatcher): the reverse proxy's exchange with a pooled
// upstream connection. A suspended request holds its connection on the
// loop, which reads nothing more of it meanwhile; Resume runs the rest of
// the handler in a turn of the connection (where it may still WillBlock),
// then what follows a handler's return (the response finished, logged and
// counted) and the connection's next request. Past the deadline given to
// Suspend, or when the loop ends (Shutdown, Close, which wait for it), the
// loop wakes its owner, which resumes it: on the loop, or once the loop
// has ended on a goroutine. A handler that left with WillBlock may ask
// (ReturnToLoop) that its connection go back to its loop as soon as its
// request is done, rather than after parkDelay of idleness.
//
// What a loop cannot
// see is a LoopSafe handler that blocks without calling WillBlock: that
// holds up every connection on its loop, and a watchdog logs a warning when
// a loop makes no progress for a second. Timeouts of connections idling on
// a loop are checked once a second, so they strike up to a second late.
// A connection waiting on its loop for its next request, with nothing
// buffered, gives its read and write buffers back to the loop and takes
// them again when bytes arrive: an idle keep-alive connection costs its
// fixed state (about 1.2 KiB of heap), not its buffers.
//
// # Who owns a descriptor
//
// A raw descriptor number is used only while whatever keeps the descriptor
// open is held: otherwise Close or Shutdown may close it, the process may
// reuse the number for its next socket (an upstream dial, another client),
// and bytes meant for one client would reach another. This table is the one
// account of who that is; the code cites it.
//
//	descriptor                   owner                       closed by                    number used
//	---------------------------  --------------------------  ---------------------------  ---------------------------
//	socket on a loop             its event loop              the loop (drop), or, after   by the loop's goroutine and
//	(loopTransport.fd), its                                  leave, the net.Conn attach   the connection's turn (a
//	request suspended or not                                 hands it to                  resumed request's included)
//	socket on a net.Conn         the goroutine serving the   that goroutine, or Close /   only inside its RawConn's
//	(netTransport)               connection                  Shutdown at any moment       Read/Write/Control callbacks
//	held socket                  the goroutine serving the   that goroutine, under        by that goroutine; Close
//	(netTransport.raw)           connection                  Server.mu (close, unhold)    shuts it down under
//	                                                                                      Server.mu
//	hijacked net.Conn            the handler                 the handler                  the handler's
//	                             (a duplicate when taken
//	                             inside a callback)
//	loop's epoll, wake eventfd   the loop                    the loop when it ends        by the loop; wake written by
//	                                                         (wake under Server.mu)       others under Server.mu
//	listener duplicate (lfd)     its loopListener, counted   the last release             by the loops holding a
//	                             (Serve and each loop)                                    reference (accept.go)
//	close-watch duplicate        its clientWatch             unwatch, after taking it     by the watcher, under the
//	                                                         out of the epoll set         watch (closewatch.go)
//	HandOff.Conn (HTTP/2)        the receiver                the receiver                 the receiver's
//	socket watched for another   that owner (an upstream     that owner; close(2) takes   by the owner, inside its
//	owner (SocketWatcher:        connection: its pool or     it out of the loop's epoll   RawConn.Control, for Watch
//	sockwatch.go)                exchange)                   set, Unwatch frees its key   and Unwatch; never by the
//	                                                                                      loop, whose events carry
//	                                                                                      the key, not the number
//
// Locks: a connection's transport (c.t) is written only by the goroutine
// serving it, under Server.mu once the connection is on the Server's books,
// so that Shutdown and Close may read it there; a loop's table of
// connections (eventLoop.conns) changes under the loop's mu (add, forget),
// and so does its table of watched sockets (Watch, Unwatch), whose ready
// functions it calls after it lets go of mu;
// Shutdown sets read deadlines under the connection's mutex. Only the
// goroutine serving a connection reads, writes or sets deadlines on it; no
// other goroutine touches a connection while it is on a loop.
//
// A connection is an exchange (conn: buffers, Request, ResponseWriter, body
// reader, serveRequest) over a transport, loopTransport or netTransport, and
// a change of owner is a one-way switch of transport, all in transport.go:
//
//   - Leaving a loop (offLoop): the loop takes the socket out of its epoll
//     (leave), then the goroutine that takes the connection over replaces
//     the raw descriptor by a net.Conn of its own (attach) and sets it as
//     the transport under Server.mu. When that happens in the middle of a
//     turn, the turn ends after the request and never uses the old number
//     again.
//   - Leaving a loop to wait for something else (leaveLoop, WillBlock: a
//     proxied request): the loop forgets the socket, but the goroutine
//     keeps the raw descriptor (held, netTransport.raw) and writes to it
//     with raw syscalls until the connection must wait for its client;
//     only then does it make the net.Conn (unhold). A response the socket
//     takes at once, on a connection that then closes, never needs one.
//     A held socket stays in its old loop's epoll set (events for it find
//     no connection there) until unhold takes it out, under the loop's mu
//     unless the loop has ended, or close(2) does. Since the goroutine
//     uses the number without a lock, it sets, replaces and closes raw
//     only under Server.mu, and Close shuts a held socket down there
//     (shutdown(2)) rather than closing it.
//   - Going back to the loop it left (rejoin, ReturnToLoop), by the
//     goroutine serving a held connection whose request is done, with
//     nothing buffered or queued: under Server.mu it makes the raw
//     descriptor the loopTransport's again, then, under the loop's mu (so
//     that the loop resolves no event for it before), puts the connection
//     back in the loop's table and re-arms its registration (EPOLL_CTL_MOD,
//     which queues an event at once for bytes that came while it was
//     held); from then on the loop owns it. If the loop has ended, attach
//     makes its net.Conn instead.
//   - Going back to a loop (backToLoop), by the goroutine serving an idle
//     connection: inside the net.Conn's Control callback, which holds the
//     descriptor open, it duplicates it; it sets the duplicate as the
//     transport under Server.mu (unless Close has begun: then it keeps the
//     net.Conn, which Close closes), closes the net.Conn, and registers the
//     duplicate with a loop, after which it never touches the connection
//     again: from the registration on, the loop owns it.
//
// # net/http handlers
//
// FromHTTP runs an http.Handler the way net/http's server does; a
// differential test (nethttp_diff_test.go) holds the two side by side. Its
// ResponseWriter implements http.Flusher, http.Hijacker and io.ReaderFrom,
// and the methods http.ResponseController uses: FlushError,
// SetReadDeadline and SetWriteDeadline (they replace Limits.IdleTimeout
// for body reads and Limits.WriteTimeout for the response until the
// handler returns) and EnableFullDuplex (without it, as in net/http, the
// unread request body is discarded when the response head goes out, and
// later reads fail with http.ErrBodyReadAfterClose). Response trailers, declared
// in a Trailer field or set with http.TrailerPrefix, make the response
// chunked and follow the last chunk. A missing Content-Type is sniffed
// from the first 512 body bytes, held back until there are that many or
// the handler flushes or returns. A panic with http.ErrAbortHandler closes
// the connection without a response (other panics get a 500).
//
// The request context derives from the connection's (Server.BaseContext,
// Server.ConnContext) and carries http.LocalAddrContextKey, not
// http.ServerContextKey. It is cancelled when the handler returns and when
// the client goes away while the handler runs, once the request body has
// been read (closewatch.go: a lazy epoll watch, armed only for requests
// whose context is asked for Done or Err). A handler running inline on an
// event loop is not watched. Request trailers are filled into
// Request.Trailer when the body reaches EOF. Not done: HTTP/2,
// http.Pusher, CloseNotifier.
package protocol

import (
	"time"
)

// Handler answers one request. The Request and ResponseWriter are only valid
// until Serve returns: they (and every []byte they hand out) are reused for the
// next request on the connection, so a handler that keeps data must copy it.
type Handler interface {
	Serve(w *ResponseWriter, r *Request)
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(w *ResponseWriter, r *Request)

// Serve calls f(w, r).
func (f HandlerFunc) Serve(w *ResponseWriter, r *Request) { f(w, r) }

// Limits bounds what one client may make a worker do. Zero values mean the
// defaults in DefaultLimits. It is also config.hcl's limits block
// (config.Limits is this type), and the JSON names are that block's keys.
//
// ReadHeaderTimeout is counted once per head, from its first byte: later
// bytes do not extend it. A new connection also gets that long for its
// first byte, and is then closed without an answer, under Shutdown too.
type Limits struct {
	RequestLine       int           `json:"request_line"`        // bytes in the request line; over it: 414
	HeaderBytes       int           `json:"header_bytes"`        // bytes in all header fields; over it: 431
	HeaderCount       int           `json:"header_count"`        // header fields; over it: 431
	BodyBytes         int64         `json:"body_bytes"`          // request body bytes; over it: 413
	ReadHeaderTimeout time.Duration `json:"read_header_timeout"` // from the first byte of a request to the end of its headers; 408
	IdleTimeout       time.Duration `json:"idle_timeout"`        // keep-alive wait for the next request
	WriteTimeout      time.Duration `json:"write_timeout"`       // longest wait without progress while sending a response
	MaxConnections    int           `json:"max_connections"`     // open connections per Server; further accepts wait
}

// DefaultLimits returns the limits documented in DESIGN.md. It is the one
// place they are written: config.hcl's defaults are these.
func DefaultLimits() Limits {
	return Limits{
		RequestLine:       8192,
		HeaderBytes:       65536,
		HeaderCount:       100,
		BodyBytes:         10 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       75 * time.Second,
		WriteTimeout:      60 * time.Second,
		MaxConnections:    10000,
	}
}

// LogFunc is called once after every request, including requests the parser
// refused (then r carries whatever was parsed, and w.Status() is the error
// status). It is the hook for access logs and counters; it must not keep r or w.
type LogFunc func(r *Request, w *ResponseWriter, start time.Time)
