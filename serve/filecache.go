package serve

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// fileCacheSize bounds the files one static route keeps open.
	fileCacheSize = 64
	// fileCacheIdle is how long a cached file may go unrequested before it
	// is closed, so that a deleted file's space is not held for long.
	fileCacheIdle = 10 * time.Second
)

// fileCache keeps the regular files a static route served recently open, so
// that a request for a file that has not changed costs one fstatat(2)
// instead of openat2(2), fstat(2) and close(2).
//
// An entry is used only while the name still resolves to the very file that
// was opened: same device, inode, size, modification and change times. A
// file written in place, replaced by rename, deleted, or changed in mode or
// owner fails that check and is opened again beneath the root. The check
// follows the name as the kernel resolves it, which may lead outside the
// root; that is harmless, because only the descriptor opened beneath the
// root is ever served, and only when the name leads to that same file.
type fileCache struct {
	mu        sync.Mutex
	files     map[string]*openFile
	lastSweep time.Time
	closed    bool
}

func newFileCache() *fileCache {
	return &fileCache{files: make(map[string]*openFile), lastSweep: time.Now()}
}

// get returns the cached file for name if it is still the file the name
// leads to, with a reference the caller releases with close; or nil.
func (c *fileCache) get(dirfd int, name string) *openFile {
	c.mu.Lock()
	f := c.files[name]
	if f == nil {
		c.mu.Unlock()
		return nil
	}
	f.refs++
	c.mu.Unlock()

	var st unix.Stat_t
	var err error
	for {
		err = unix.Fstatat(dirfd, name, &st, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err == nil && sameFile(&st, &f.st) {
		now := time.Now()
		c.mu.Lock()
		f.used = now
		c.sweep(now)
		c.mu.Unlock()
		return f
	}
	c.mu.Lock()
	if c.files[name] == f {
		delete(c.files, name)
		c.unref(f)
	}
	c.unref(f)
	c.mu.Unlock()
	return nil
}

// put adds the freshly opened regular file f under name. The caller's
// reference stays the caller's; the cache takes one of its own.
func (c *fileCache) put(name string, f *openFile) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	f.cache = c
	f.refs++ // the caller's
	if c.closed {
		return
	}
	if old := c.files[name]; old != nil {
		delete(c.files, name)
		c.unref(old)
	}
	c.sweep(now)
	if len(c.files) >= fileCacheSize {
		for k, old := range c.files { // an arbitrary victim
			delete(c.files, k)
			c.unref(old)
			break
		}
	}
	f.used = now
	f.refs++ // the cache's
	c.files[name] = f
}

// release drops a reference taken by get or put.
func (c *fileCache) release(f *openFile) {
	c.mu.Lock()
	c.unref(f)
	c.mu.Unlock()
}

// sweep closes the entries idle for fileCacheIdle, at most once per
// fileCacheIdle; c.mu must be held.
func (c *fileCache) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < fileCacheIdle {
		return
	}
	c.lastSweep = now
	for k, f := range c.files {
		if now.Sub(f.used) >= fileCacheIdle {
			delete(c.files, k)
			c.unref(f)
		}
	}
}

// unref drops one reference and closes the descriptor with the last one;
// c.mu must be held.
func (c *fileCache) unref(f *openFile) {
	f.refs--
	if f.refs == 0 {
		f.closeFd()
	}
}

// close drops every entry; files still being served close when their
// requests finish.
func (c *fileCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, f := range c.files {
		delete(c.files, k)
		c.unref(f)
	}
}

// sameFile reports whether a and b describe the same, unchanged file.
func sameFile(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size &&
		a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Mode == b.Mode
}
