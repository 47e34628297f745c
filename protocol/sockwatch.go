package protocol

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SocketWatcher watches sockets other than the server's own connections
// for readiness on one of the server's event loops: the reverse proxy's
// idle upstream connections (protocol/upstream's Watcher). A socket is
// registered once, edge-triggered, and stays registered until it is
// closed, so that using it and putting it back costs no epoll_ctl; the
// loop reports each event, in the order the kernel gives them, between
// the requests it serves, at no cost beyond the epoll_wait it makes
// anyway.
type SocketWatcher interface {
	// Watch registers fd, which the caller keeps open meanwhile (inside
	// its RawConn.Control), for EPOLLIN, EPOLLOUT and EPOLLRDHUP,
	// edge-triggered, as Go's runtime poller registers its sockets (a
	// connect under way ends with EPOLLOUT; a socket that is writable
	// when it is registered brings one event at once): ready is called on
	// the loop's goroutine at each event (it must not block), and once
	// with gone true when the loop ends (Shutdown), after which the
	// registration is void and ready is never called again. The key names
	// the registration for Unwatch.
	Watch(fd int, ready func(gone bool)) (key int, err error)
	// Unwatch ends the registration key: its slot may name another
	// socket's from then on, so a ready call already on its way may
	// reach that one (a spurious event, which a watcher must tolerate).
	// fd is the socket's descriptor when the caller keeps it open and
	// open it stays (inside its RawConn.Control): the loop takes it out
	// of its epoll set. fd is -1 for a socket that is closed or about to
	// be: close(2) takes it out.
	Unwatch(key, fd int)
}

// errLoopEnded is Watch's error once the loop has ended.
var errLoopEnded = errors.New("protocol: event loop ended")

// sockWatch is one registration of a SocketWatcher.
type sockWatch struct {
	ready func(gone bool)
}

// SocketWatcher returns an event loop of the server that serves w's
// connection for watching other sockets: the loop the connection came
// from, when it did, else the next one in turn. It returns nil when the
// server has no event loops.
func (w *ResponseWriter) SocketWatcher() SocketWatcher {
	if l := w.c.home; l != nil {
		return l
	}
	if l := w.c.srv.pickLoop(); l != nil {
		return l
	}
	return nil
}

// Watch is SocketWatcher.Watch.
func (l *eventLoop) Watch(fd int, ready func(gone bool)) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return -1, errLoopEnded
	}
	var key int
	if n := len(l.freeWatch); n > 0 {
		key = l.freeWatch[n-1]
		l.freeWatch = l.freeWatch[:n-1]
	} else {
		key = len(l.watched)
		l.watched = append(l.watched, nil)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(key), Pad: evSocket}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.freeWatch = append(l.freeWatch, key)
		return -1, fmt.Errorf("protocol: watching a socket: epoll_ctl: %w", err)
	}
	l.watched[key] = &sockWatch{ready: ready}
	return key, nil
}

// Unwatch is SocketWatcher.Unwatch.
func (l *eventLoop) Unwatch(key, fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || key < 0 || key >= len(l.watched) || l.watched[key] == nil {
		return // the loop ended, and its epoll set with it
	}
	if fd >= 0 {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	l.watched[key] = nil
	l.freeWatch = append(l.freeWatch, key)
}

// fireWatches calls the ready functions of the socket events that resolve
// found, outside l.mu: a watcher's callback may close its socket and
// Unwatch it.
func (l *eventLoop) fireWatches() {
	for i, w := range l.firing {
		l.firing[i] = nil
		w.ready(false)
	}
	l.firing = l.firing[:0]
}

// endWatches tells every watcher that the loop, which has ended (l.closed
// is set), no longer watches its socket.
func (l *eventLoop) endWatches() {
	l.mu.Lock()
	ws := l.watched
	l.watched, l.freeWatch = nil, nil
	l.mu.Unlock()
	for _, w := range ws {
		if w != nil {
			w.ready(true)
		}
	}
}
