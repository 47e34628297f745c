package protocol

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/forkd/forkd/protocol/internal/epoll"
	"golang.org/x/sys/unix"
)

// Client-gone detection: net/http cancels a request's context when its
// client goes away while the handler runs, by reading the connection in
// the background (a goroutine per request) once the request body has been
// read. FromHTTP does the same on demand (see requestContext): only a
// request whose context is asked for Done or Err is watched, and the
// watch costs no goroutine. A watch holds a duplicate of the socket's
// descriptor, registered with the Server's watcher epoll for EPOLLRDHUP
// (the peer's FIN; a reset comes as EPOLLHUP/EPOLLERR), one-shot. When it
// fires, a MSG_PEEK read tells what happened without consuming a byte:
// EOF or an error means the client is gone; data means the client sent its
// next request (pipelining), and then, like net/http, the request is no
// longer watched.
//
// Who owns what: the duplicate belongs to its clientWatch, which alone
// closes it (unwatch), after removing it from the epoll set, so the number
// is never used after it is closed; the epoll set (protocol/internal/epoll)
// guards its own descriptor the same way.

// closeWatch is the Server's watcher, made on first use.
type closeWatch struct {
	once    sync.Once
	w       *closeWatcher // nil when it could not be made
	stopped atomic.Bool   // Close (or the end of Shutdown) stopped it
}

// closeWatcher waits for the events of every watch of one Server on one
// goroutine, parked in the runtime's poller on the epoll descriptor.
type closeWatcher struct {
	set *epoll.Set

	mu      sync.Mutex
	watches map[uint64]*clientWatch
	next    uint64
	closed  bool
}

// clientWatch is one watched request.
type clientWatch struct {
	fd    int    // a duplicate of the socket, owned by the watch
	token uint64 // the epoll event's data
	gone  func() // cancels the request's context
}

// watchClient watches the socket rc holds for its client going away while
// a request is served, calling gone if it does; a Server that Close has
// stopped counts as gone, as its connections are closed. It returns nil
// when nothing needs an unwatch.
func (s *Server) watchClient(rc syscall.RawConn, gone func()) *clientWatch {
	if w := s.watcher(); w != nil {
		return w.watch(rc, gone)
	}
	if s.hk.watch.stopped.Load() {
		gone()
	}
	return nil
}

// watcher returns the Server's watcher, starting it on first use; nil if
// epoll is unavailable (requests are then not watched) or the Server
// stopped it.
func (s *Server) watcher() *closeWatcher {
	s.hk.watch.once.Do(func() {
		w, err := newCloseWatcher()
		if err != nil {
			s.logger.Warn("client-gone detection unavailable", "error", err)
			return
		}
		s.hk.watch.w = w
		go w.run()
	})
	return s.hk.watch.w
}

// stopWatcher ends the watcher; Close and Shutdown call it (without s.mu).
// Requests that ask for one afterwards are not watched.
func (s *Server) stopWatcher() {
	s.hk.watch.stopped.Store(true)
	s.hk.watch.once.Do(func() {}) // none made from now on; waits for one being made
	if w := s.hk.watch.w; w != nil {
		w.close()
	}
}

func newCloseWatcher() (*closeWatcher, error) {
	set, err := epoll.NewSet("closewatch")
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	return &closeWatcher{set: set, watches: make(map[uint64]*clientWatch)}, nil
}

// watch starts watching the socket rc holds; gone runs (once, on the
// watcher's goroutine) if the client goes away. A connection already
// closed (by Server.Close) counts as gone at once. It returns nil when
// nothing needs an unwatch.
func (w *closeWatcher) watch(rc syscall.RawConn, gone func()) *clientWatch {
	dfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		dfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		gone()
		return nil
	}
	if derr != nil {
		return nil // out of descriptors: not watched
	}
	cw := &clientWatch{fd: dfd, gone: gone}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		unix.Close(dfd)
		gone() // see close
		return nil
	}
	w.next++
	cw.token = w.next
	if err := w.set.Ctl(unix.EPOLL_CTL_ADD, dfd, watchEvents, cw.token); err != nil {
		unix.Close(dfd)
		return nil
	}
	w.watches[cw.token] = cw
	return cw
}

// unwatch ends cw; after it returns, gone is not called any more.
func (w *closeWatcher) unwatch(cw *clientWatch) {
	w.mu.Lock()
	delete(w.watches, cw.token)
	if !w.closed {
		w.set.Ctl(unix.EPOLL_CTL_DEL, cw.fd, 0, 0)
	}
	w.mu.Unlock()
	unix.Close(cw.fd)
}

// watchEvents is the one-shot registration of a watch: the peer's FIN
// (EPOLLRDHUP) and, always reported, EPOLLHUP and EPOLLERR.
const watchEvents = unix.EPOLLRDHUP | unix.EPOLLONESHOT

// close stops the watcher (Server.Close, or the end of Shutdown) and
// cancels the requests still watched, as net/http's background reads fail
// when its Close closes their connections: the duplicates keep the sockets
// open until the handlers return. Their unwatch closes the duplicates.
func (w *closeWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.set.Close() // ends run's wait
	for _, cw := range w.watches {
		cw.gone()
	}
}

// run handles events until the watcher is closed.
func (w *closeWatcher) run() {
	for {
		evs, err := w.set.Wait()
		if err != nil {
			return
		}
		w.handle(evs)
	}
}

// handle looks at the sockets whose events came.
func (w *closeWatcher) handle(evs []unix.EpollEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range evs {
		cw := w.watches[epoll.Token(&evs[i])]
		if cw == nil {
			continue // unwatched meanwhile
		}
		switch epoll.Peek(cw.fd) {
		case epoll.Data:
			// The client sent more: it is still there (net/http, too,
			// stops watching once a byte came).
		case epoll.Nothing:
			// Nothing after all: watch on.
			if w.set.Ctl(unix.EPOLL_CTL_MOD, cw.fd, watchEvents, cw.token) != nil {
				cw.gone()
			}
		default:
			cw.gone() // EOF, or the connection broke
		}
	}
}
