package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// staticMaxRetries bounds retries of openat2 after EAGAIN (a concurrent
// rename during resolution) or EINTR.
const staticMaxRetries = 16

// static serves files below one root directory.
//
// The root (dirfd or root, and the cache whose lookups resolve through it)
// is shared by the handler and every request being served: refs counts them,
// one for the handler until Close and one per request in serveRoute, and the
// last to let go closes it. A descriptor closed under a request would fail
// its opens, or resolve them in whatever directory reused the number.
type static struct {
	rootPath string
	dirfd    int      // O_PATH descriptor of the root; -1 when closed
	root     *os.Root // set when openat2 is unavailable
	refs     atomic.Int64
	closed   atomic.Bool // Close has dropped the handler's reference
	index    []string
	dotfiles bool
	// precompressed are the codings of the files served in place of a
	// file (name.br...), in order of preference.
	precompressed []coding
	// comp compresses files on the fly, into its cache; nil: none.
	comp   *compressor
	logger hclog.Logger
	cache  *fileCache // nil with the os.Root fallback
	// fallback is the file (below the root, without its leading '/')
	// served with 200 for a path that names none; "" answers 404.
	fallback string
}

// openFile is a file opened below the root.
type openFile struct {
	fd int
	f  *os.File // the os.Root fallback's file; nil with openat2
	st unix.Stat_t

	// cache is set once the file is in a fileCache; refs and used then
	// belong to the cache's mutex.
	cache *fileCache
	refs  int
	used  time.Time
}

// Fd returns the descriptor, for ResponseWriter.SendFile.
func (f *openFile) Fd() uintptr { return uintptr(f.fd) }

// ReadAt reads the file at off with pread: ResponseWriter.SendFile copies
// through it on a connection that is not a socket of its own (TLS).
func (f *openFile) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(f.fd, p[n:], off+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

func (f *openFile) close() {
	if f.cache != nil {
		f.cache.release(f)
		return
	}
	f.closeFd()
}

// closeFd closes the descriptor.
func (f *openFile) closeFd() {
	if f.f != nil {
		_ = f.f.Close()
		return
	}
	_ = unix.Close(f.fd) // close(2) is not retried on EINTR on Linux: the fd is gone
}

func (f *openFile) isRegular() bool { return f.st.Mode&unix.S_IFMT == unix.S_IFREG }
func (f *openFile) isDir() bool     { return f.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// newStatic opens the root directory of c.
func newStatic(c *config.Static, logger hclog.Logger) (*static, error) {
	if c.Root == "" {
		return nil, errors.New("static: root is required")
	}
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return nil, fmt.Errorf("static: root %q: %w", c.Root, err)
	}
	for _, idx := range c.Index {
		if idx == "" || strings.ContainsAny(idx, "/\\\x00") || idx == "." || idx == ".." {
			return nil, fmt.Errorf("static: bad index name %q", idx)
		}
	}
	s := &static{
		rootPath: root,
		dirfd:    -1,
		index:    c.Index,
		dotfiles: c.Dotfiles,
		logger:   logger,
		fallback: strings.TrimPrefix(c.Fallback, "/"),
	}
	s.refs.Store(1) // the handler's, dropped by Close
	if s.index == nil {
		s.index = []string{"index.html"}
	}
	switch {
	case c.Precompressed != nil:
		s.precompressed = codingsOf(c.Precompressed)
	case c.Gzip:
		s.precompressed = []coding{codingGzip}
	}
	var fd int
	for {
		fd, err = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("static: root %q: %w", root, err)
	}
	s.dirfd = fd
	// Probe openat2: missing before Linux 5.6 (ENOSYS), or refused by a
	// seccomp filter (EPERM).
	probe, err := s.openat2(".")
	switch {
	case err == nil:
		_ = unix.Close(probe)
		s.cache = newFileCache()
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG):
		r, rerr := os.OpenRoot(root)
		if rerr != nil {
			_ = s.Close()
			return nil, fmt.Errorf("static: root %q: %w", root, rerr)
		}
		s.root = r
		logger.Debug("openat2 unavailable; using os.Root", "error", err)
	default:
		_ = s.Close()
		return nil, fmt.Errorf("static: root %q: %w", root, err)
	}
	return s, nil
}

// Close drops the handler's hold on the root directory: it closes now, or
// when the last request still serving from it finishes. Requests that
// begin after Close are answered 503.
func (s *static) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.release()
}

// acquire takes a hold on the root for one request; false once the root
// is closed or closing.
func (s *static) acquire() bool {
	for {
		n := s.refs.Load()
		if n == 0 || s.closed.Load() {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a hold taken by acquire (or the handler's), closing the
// root with the last one.
func (s *static) release() error {
	if s.refs.Add(-1) != 0 {
		return nil
	}
	return s.closeRoot()
}

// closeRoot closes the root directory and the cache; no one holds them.
func (s *static) closeRoot() error {
	var err error
	if s.cache != nil {
		s.cache.close()
	}
	if s.root != nil {
		err = s.root.Close()
		s.root = nil
	}
	if s.dirfd >= 0 {
		_ = unix.Close(s.dirfd)
		s.dirfd = -1
	}
	return err
}

// openat2 opens rel (relative, cleaned) beneath the root.
func (s *static) openat2(rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	var err error
	for range staticMaxRetries {
		var fd int
		fd, err = unix.Openat2(s.dirfd, rel, &how)
		if err == nil {
			return fd, nil
		}
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	return -1, err
}

// open opens rel beneath the root and stats it, or takes it from the cache.
func (s *static) open(rel string) (*openFile, error) {
	cache := s.cache
	if s.root != nil {
		cache = nil
	}
	if cache != nil {
		if f := cache.get(s.dirfd, rel); f != nil {
			return f, nil
		}
	}
	f, err := s.openFresh(rel)
	if err == nil && cache != nil && f.isRegular() {
		cache.put(rel, f)
	}
	return f, err
}

// openFresh opens rel beneath the root and stats it.
func (s *static) openFresh(rel string) (*openFile, error) {
	f := &openFile{fd: -1}
	if s.root != nil {
		of, err := s.root.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, err
		}
		f.f = of
		f.fd = int(of.Fd())
	} else {
		fd, err := s.openat2(rel)
		if err != nil {
			return nil, err
		}
		f.fd = fd
	}
	for {
		err := unix.Fstat(f.fd, &f.st)
		if err == nil {
			return f, nil
		}
		if err != unix.EINTR {
			f.close()
			return nil, err
		}
	}
}

// serveRoute serves the file named by the cleaned path, holding the root
// until it is done.
func (s *static) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	if !s.acquire() {
		writeError(w, 503)
		return
	}
	defer func() { _ = s.release() }()
	head := string(r.Method) == "HEAD"
	if !head && string(r.Method) != "GET" {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, 405)
		return
	}
	if p.flags&(pathEncSlash|pathBackslash) != 0 || (p.flags&pathDotfile != 0 && !s.dotfiles) {
		writeError(w, 404)
		return
	}
	rel := string(p.path[1:])
	if rel == "" || rel[len(rel)-1] == '/' {
		for _, idx := range s.index {
			f, err := s.open(rel + idx)
			if err != nil {
				if status := s.openErrorStatus(err); status != 404 {
					writeError(w, status)
					return
				}
				continue
			}
			if f.isRegular() {
				s.serveFile(w, r, f, rel+idx, head)
				return
			}
			f.close()
		}
		s.notFound(w, r, head)
		return
	}
	f, err := s.open(rel)
	if err != nil {
		if status := s.openErrorStatus(err); status != 404 {
			writeError(w, status)
			return
		}
		s.notFound(w, r, head)
		return
	}
	switch {
	case f.isDir():
		f.close()
		s.redirectDir(w, r, p)
	case f.isRegular():
		s.serveFile(w, r, f, rel, head)
	default:
		f.close()
		s.notFound(w, r, head)
	}
}

// notFound answers a path that names no file: with the fallback file
// when there is one (a single-page application's index.html), else 404.
func (s *static) notFound(w *protocol.ResponseWriter, r *protocol.Request, head bool) {
	if s.fallback != "" {
		if f, err := s.open(s.fallback); err == nil {
			if f.isRegular() {
				s.serveFile(w, r, f, s.fallback, head)
				return
			}
			f.close()
		}
	}
	writeError(w, 404)
}

// openErrorStatus maps an open error to a status: 403 for permissions, 500
// for what should not happen, 404 for the rest (missing files and every
// refused path alike).
func (s *static) openErrorStatus(err error) int {
	switch {
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return 403
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EXDEV),
		errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.ENXIO):
		return 404
	}
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Err != nil && strings.Contains(pe.Err.Error(), "escapes") {
		return 404 // os.Root: "path escapes from parent"
	}
	s.logger.Warn("open failed", "root", s.rootPath, "error", err)
	return 500
}

// redirectDir answers a directory named without its trailing slash with a
// redirect to the name with one (RFC 9110 section 15.4.2).
func (s *static) redirectDir(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	loc := make([]byte, 0, len(p.path)+len(r.Query)+8)
	loc = appendEscapedPath(loc, p.path)
	loc = append(loc, '/')
	if len(r.Query) > 0 && visibleASCII(r.Query) {
		loc = append(loc, '?')
		loc = append(loc, r.Query...)
	}
	w.Header().SetBytes("Location", loc)
	writeError(w, 301)
}

// serveFile answers with the file f (named name below the root), or with a
// compressed variant of it (a precompressed file, or one compressed here
// and cached), honouring conditional and range requests.
func (s *static) serveFile(w *protocol.ResponseWriter, r *protocol.Request, f *openFile, name string, head bool) {
	defer func() { f.close() }()
	hdr := w.Header()
	ctype := contentType(name)
	pre := len(s.precompressed) > 0 && !hasCodingExt(name)
	dyn := s.comp != nil && typeIn(s.comp.types, mediaType(ctype)) && f.st.Size >= s.comp.minLength
	enc := codingIdentity
	var cached []byte // the variant compressed here and cached
	stream := false   // the variant is compressed as it goes out
	if pre || dyn {
		// The response depends on Accept-Encoding whether or not this
		// client gets a variant (RFC 9110 section 12.5.5).
		hdr.Set("Vary", "Accept-Encoding")
		// A range is of the identity bytes: a variant's bytes differ from
		// one compression to the next, and clients resume what they saw.
		if ae := r.Header.Get("Accept-Encoding"); len(ae) > 0 && r.Header.Get("Range") == nil {
			if pre {
				// The best coding with a file, then the next best.
				var left [codingGzip]coding
				offered := append(left[:0], s.precompressed...)
				for c := negotiate(ae, offered); c != codingIdentity; c = negotiate(ae, offered) {
					if zf := s.openVariant(f, name, c); zf != nil {
						f.close()
						f, enc = zf, c
						break
					}
					offered = slices.DeleteFunc(offered, func(o coding) bool { return o == c })
				}
			}
			if enc == codingIdentity && dyn {
				if c := negotiate(ae, s.comp.offered); c != codingIdentity {
					// A file too large for the cache (or without one) is
					// compressed as it is sent, as nginx's gzip does.
					var ok bool
					if s.comp.cache == nil || f.st.Size > s.comp.maxStatic {
						enc, stream = c, true
					} else if cached, ok = s.variant(f, c); ok {
						enc = c
					}
				}
			}
		}
	}

	size := f.st.Size
	mtime := time.Unix(int64(f.st.Mtim.Sec), int64(f.st.Mtim.Nsec))
	var tagBuf [50]byte
	etag := appendETag(append(tagBuf[:0], "W/"...), mtime, size, enc)
	if stream {
		// Compressed here on each request: the bytes need not be the
		// same twice (a level or library changed), so the tag is weak.
		hdr.SetBytes("ETag", etag)
	} else {
		hdr.SetBytes("ETag", etag[2:])
	}
	etag = etag[2:]
	var lmBuf [len(http.TimeFormat) + 4]byte
	lastMod := mtime.UTC().AppendFormat(lmBuf[:0], http.TimeFormat)
	hdr.SetBytes("Last-Modified", lastMod)

	switch checkConditions(r, etag, stream, mtime) {
	case 304:
		w.WriteHeader(304)
		return
	case 412:
		writeError(w, 412)
		return
	}

	hdr.Set("Content-Type", ctype)
	if enc != codingIdentity {
		hdr.Set("Content-Encoding", enc.name())
	}
	if cached != nil {
		w.SetContentLength(int64(len(cached)))
		w.WriteHeader(200)
		if !head {
			_, _ = w.Write(cached)
		}
		return
	}
	if stream {
		// Chunked: the length is known once the last byte is compressed.
		w.WriteHeader(200)
		if !head {
			if err := s.comp.compressTo(w, enc, io.NewSectionReader(f, 0, size)); err != nil {
				s.logger.Debug("compressing a static file failed", "coding", enc.name(), "error", err)
			}
		}
		return
	}
	hdr.Set("Accept-Ranges", "bytes")
	status, start, length := 200, int64(0), size
	if rng := r.Header.Get("Range"); rng != nil && ifRangeMatches(r.Header.Get("If-Range"), etag, mtime) {
		switch a, n, res := parseRange(rng, size); res {
		case rangeOK:
			status, start, length = 206, a, n
			var crBuf [64]byte
			cr := append(crBuf[:0], "bytes "...)
			cr = strconv.AppendInt(cr, a, 10)
			cr = append(cr, '-')
			cr = strconv.AppendInt(cr, a+n-1, 10)
			cr = append(cr, '/')
			cr = strconv.AppendInt(cr, size, 10)
			hdr.SetBytes("Content-Range", cr)
		case rangeUnsatisfiable:
			hdr.Del("Content-Encoding")
			var crBuf [32]byte
			cr := strconv.AppendInt(append(crBuf[:0], "bytes */"...), size, 10)
			hdr.SetBytes("Content-Range", cr)
			writeError(w, 416)
			return
		}
	}
	w.SetContentLength(length)
	w.WriteHeader(status)
	if head || length == 0 {
		return
	}
	if err := w.SendFile(f, start, length); err != nil {
		s.logger.Debug("sendfile failed", "error", err)
	}
}

// openVariant opens name's precompressed file for coding c: a regular
// file not older than f (an edited name with a stale name.gz beside it
// gets name itself); nil when there is none.
func (s *static) openVariant(f *openFile, name string, c coding) *openFile {
	zf, err := s.open(name + c.ext())
	if err != nil {
		return nil
	}
	if !zf.isRegular() || zf.st.Mtim.Sec < f.st.Mtim.Sec ||
		zf.st.Mtim.Sec == f.st.Mtim.Sec && zf.st.Mtim.Nsec < f.st.Mtim.Nsec {
		zf.close()
		return nil
	}
	return zf
}

// variant returns f compressed with c, from the cache or compressed now
// and cached: a hot file is compressed once per worker and coding.
func (s *static) variant(f *openFile, c coding) ([]byte, bool) {
	k := variantKey{dev: f.st.Dev, ino: f.st.Ino, mtime: f.st.Mtim.Nano(), size: f.st.Size, coding: c}
	if b, ok := s.comp.cache.get(k); ok {
		return b, true
	}
	b, err := s.comp.compressAll(c, io.NewSectionReader(f, 0, f.st.Size))
	if err != nil {
		s.logger.Debug("compressing a static file failed", "coding", c.name(), "error", err)
		return nil, false
	}
	s.comp.cache.put(k, b)
	return b, true
}

// mediaType is a Content-Type value without its parameters.
func mediaType(ctype string) string {
	if i := strings.IndexByte(ctype, ';'); i >= 0 {
		ctype = ctype[:i]
	}
	return strings.TrimSpace(ctype)
}

// hasCodingExt reports whether name is itself a precompressed file
// (served as it is, with its own type).
func hasCodingExt(name string) bool {
	return strings.HasSuffix(name, ".gz") || strings.HasSuffix(name, ".br") || strings.HasSuffix(name, ".zst")
}

// appendETag appends a strong entity tag (RFC 9110 section 8.8.3) made of
// the modification time and size, and for a compressed variant a suffix
// naming its coding: a variant never carries the identity's tag.
func appendETag(dst []byte, mtime time.Time, size int64, enc coding) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, mtime.UnixNano(), 36)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, size, 36)
	if enc != codingIdentity {
		dst = append(dst, '-')
		dst = append(dst, enc.ext()[1:]...)
	}
	return append(dst, '"')
}

// checkConditions evaluates the preconditions of a GET or HEAD in the order
// of RFC 9110 section 13.2.2 and returns 304, 412, or 0 to go on.
func checkConditions(r *protocol.Request, etag []byte, weak bool, mtime time.Time) int {
	mtime = mtime.Truncate(time.Second) // HTTP dates have one-second resolution
	if im := r.Header.Get("If-Match"); im != nil {
		// A weak tag never matches strongly; "*" matches any.
		if !etagListMatches(im, etag, true) || weak && string(httplex.TrimOWS(im)) != "*" {
			return 412
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != nil {
		if t, err := http.ParseTime(string(ius)); err == nil && mtime.After(t) {
			return 412
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != nil {
		if etagListMatches(inm, etag, false) {
			return 304
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != nil {
		if t, err := http.ParseTime(string(ims)); err == nil && !mtime.After(t) {
			return 304
		}
	}
	return 0
}

// etagListMatches reports whether the If-Match / If-None-Match value list
// ("*" or a comma-separated list of entity tags) matches etag, with the
// strong or the weak comparison (RFC 9110 section 8.8.3.2).
func etagListMatches(list, etag []byte, strong bool) bool {
	list = httplex.TrimOWS(list)
	if len(list) == 1 && list[0] == '*' {
		return true
	}
	for len(list) > 0 {
		var tag []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			tag, list = httplex.TrimOWS(list[:i]), list[i+1:]
		} else {
			tag, list = httplex.TrimOWS(list), nil
		}
		weak := len(tag) > 2 && tag[0] == 'W' && tag[1] == '/'
		if weak {
			if strong {
				continue
			}
			tag = tag[2:]
		}
		if string(tag) == string(etag) {
			return true
		}
	}
	return false
}

// ifRangeMatches reports whether a Range may be honoured given If-Range
// (RFC 9110 section 13.1.5): absent, or a strong match of the entity tag, or
// exactly the Last-Modified date.
func ifRangeMatches(v, etag []byte, mtime time.Time) bool {
	if v == nil {
		return true
	}
	v = httplex.TrimOWS(v)
	if len(v) > 0 && (v[0] == '"' || v[0] == 'W') {
		return string(v) == string(etag)
	}
	t, err := http.ParseTime(string(v))
	return err == nil && t.Equal(mtime.Truncate(time.Second))
}

// Results of parseRange.
const (
	rangeIgnore = iota
	rangeOK
	rangeUnsatisfiable
)

// parseRange parses a Range value (RFC 9110 section 14.1.1) against a
// representation of size bytes. It returns rangeOK with the first byte and
// the length of a single satisfiable range; rangeUnsatisfiable; or
// rangeIgnore for anything else — malformed, another unit, several ranges,
// an empty file — which is then served whole.
func parseRange(v []byte, size int64) (start, length int64, result int) {
	v = httplex.TrimOWS(v)
	const unit = "bytes="
	if size <= 0 || len(v) < len(unit) || !httplex.EqualFold(v[:len(unit)], unit) {
		return 0, 0, rangeIgnore
	}
	spec := httplex.TrimOWS(v[len(unit):])
	if bytes.IndexByte(spec, ',') >= 0 {
		return 0, 0, rangeIgnore
	}
	dash := bytes.IndexByte(spec, '-')
	if dash < 0 {
		return 0, 0, rangeIgnore
	}
	a, b := httplex.TrimOWS(spec[:dash]), httplex.TrimOWS(spec[dash+1:])
	if len(a) == 0 {
		n, ok := parseDigits(b)
		if !ok {
			return 0, 0, rangeIgnore
		}
		if n == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		n = min(n, size)
		return size - n, n, rangeOK
	}
	first, ok := parseDigits(a)
	if !ok {
		return 0, 0, rangeIgnore
	}
	last := size - 1
	if len(b) > 0 {
		if last, ok = parseDigits(b); !ok || last < first {
			return 0, 0, rangeIgnore
		}
	}
	if first >= size {
		return 0, 0, rangeUnsatisfiable
	}
	last = min(last, size-1)
	return first, last - first + 1, rangeOK
}

// parseDigits parses a non-empty string of decimal digits that fits int64.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// visibleASCII reports whether b holds only visible ASCII characters.
func visibleASCII(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
