package serve

import (
	"bytes"
	"container/list"
	"io"
	"strings"
	"sync"
	"unsafe"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol"
)

// encoder is what the codecs of klauspost/compress and andybalholm/brotli
// have in common: a stream that can be flushed, closed, and reused.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(w io.Writer)
}

// compressor is one compress block made ready: what it compresses, its
// pooled encoders, and the per-worker cache of static variants. Routes
// that share the block (a site's) share it.
type compressor struct {
	offered   []coding
	types     []string // lower case
	minLength int64
	levels    [codingGzip + 1]int // by coding
	cache     *variantCache       // nil: cache = 0
	// maxStatic is the largest static file compressed on the fly: its
	// variant must fit in the cache, with room for others.
	maxStatic int64
	pools     [codingGzip + 1]sync.Pool // encoders, by coding
	bodies    sync.Pool                 // *compressBody
}

func newCompressor(c *config.Compress) *compressor {
	z := &compressor{offered: codingsOf(c.Algorithms), minLength: c.MinLength}
	for _, k := range []coding{codingZstd, codingBr, codingGzip} {
		z.levels[k] = c.Level(k.name())
	}
	for _, t := range c.Types {
		z.types = append(z.types, strings.ToLower(t))
	}
	if c.Cache > 0 {
		z.cache = newVariantCache(int64(min(c.Cache, 1<<62)))
		z.maxStatic = int64(min(c.Cache, 1<<62)) / 8
	}
	return z
}

// typeOK reports whether a Content-Type value, parameters aside, is one
// of the types compressed. It does not allocate.
func (z *compressor) typeOK(ctype []byte) bool {
	if i := bytes.IndexByte(ctype, ';'); i >= 0 {
		ctype = ctype[:i]
	}
	return typeIn(z.types, httplex.TrimOWS(ctype))
}

// typeIn reports whether the media type t is in types (lower case,
// "type/*" for a whole type).
func typeIn[T string | []byte](types []string, t T) bool {
	for _, m := range types {
		if prefix, ok := strings.CutSuffix(m, "*"); ok {
			if len(t) > len(prefix) && httplex.EqualFold(t[:len(prefix)], prefix) {
				return true
			}
		} else if httplex.EqualFold(t, m) {
			return true
		}
	}
	return false
}

// compressOf is the compress block of a route: its own, else its
// site's; nil for none.
func compressOf(cs *config.Site, cr *config.Route) *config.Compress {
	if cr != nil && cr.Compress != nil {
		return cr.Compress
	}
	return cs.Compress
}

// compressor returns the compressor of block c, made once per block; nil
// for nil.
func (h *handler) compressor(c *config.Compress) *compressor {
	if c == nil {
		return nil
	}
	z := h.compressors[c]
	if z == nil {
		z = newCompressor(c)
		h.compressors[c] = z
	}
	return z
}

// encoder returns a pooled encoder of coding k writing to w.
func (z *compressor) encoder(k coding, w io.Writer) encoder {
	if e, ok := z.pools[k].Get().(encoder); ok {
		e.Reset(w)
		return e
	}
	var e encoder
	switch k {
	case codingGzip:
		e, _ = gzip.NewWriterLevel(w, z.levels[k]) // config checked the level
	case codingBr:
		e = brotli.NewWriterLevel(w, z.levels[k])
	default:
		e, _ = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(z.levels[k])),
			zstd.WithWindowSize(1<<20)) // the options are valid
	}
	return e
}

// release returns e, closed, to its pool; it keeps no writer.
func (z *compressor) release(k coding, e encoder) {
	e.Reset(io.Discard)
	z.pools[k].Put(e)
}

// compressAll compresses src with coding k into a new slice of its size.
func (z *compressor) compressAll(k coding, src io.Reader) ([]byte, error) {
	var out bytes.Buffer
	e := z.encoder(k, &out)
	defer z.release(k, e)
	if _, err := io.Copy(e, src); err != nil {
		return nil, err
	}
	if err := e.Close(); err != nil {
		return nil, err
	}
	return bytes.Clone(out.Bytes()), nil
}

// copyBufs are the buffers compressTo reads files through.
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// compressTo compresses src with coding k onto w, as a stream.
func (z *compressor) compressTo(w io.Writer, k coding, src io.Reader) error {
	e := z.encoder(k, w)
	defer z.release(k, e)
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := src.Read(buf[:])
		if n > 0 {
			if _, werr := e.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return e.Close()
		}
		if err != nil {
			return err
		}
	}
}

// variantKey names a compressed variant of one version of a file: the
// file's identity and modification, so that an edited file (a new mtime
// or size) is never answered from the cache.
type variantKey struct {
	dev, ino uint64
	mtime    int64 // nanoseconds
	size     int64
	coding   coding
}

type variant struct {
	key  variantKey
	body []byte // never changed once cached
}

// variantCache keeps compressed variants of static files, at most max
// bytes of them, evicting the least recently used (one per worker: the
// workers share nothing).
type variantCache struct {
	mu   sync.Mutex
	max  int64
	used int64
	m    map[variantKey]*list.Element
	lru  list.List // of *variant, most recent first
}

func newVariantCache(max int64) *variantCache {
	return &variantCache{max: max, m: make(map[variantKey]*list.Element)}
}

// get returns the variant's bytes, which the caller must not change.
func (c *variantCache) get(k variantKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*variant).body, true
}

// len returns how many variants are cached.
func (c *variantCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// put adds a variant, evicting the least recently used until it fits.
func (c *variantCache) put(k variantKey, body []byte) {
	n := int64(len(body))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return // compressed twice at once: keep the first
	}
	for c.used+n > c.max {
		last := c.lru.Back()
		v := c.lru.Remove(last).(*variant)
		delete(c.m, v.key)
		c.used -= int64(len(v.body))
	}
	c.m[k] = c.lru.PushFront(&variant{key: k, body: body})
	c.used += n
}

// compressHook is the head hook of a route that compresses (after the
// route's header changes, prev, so that it sees the fields that go out):
// it decides, per response, whether the body is compressed, and installs
// a pooled compressBody as the body filter when it is. A response it
// leaves alone costs a look at a few fields.
type compressHook struct {
	z    *compressor
	prev protocol.HeadHook // nil: none
}

// BeforeHead compresses what gzhttp and nginx's gzip would: a response
// with a body (not 1xx, 204, 206, 304), not already encoded, not marked
// Cache-Control: no-transform (RFC 9111 section 5.2.2.6), of a listed
// type, at least min_length long when the length is known, to a client
// that accepts a coding offered.
func (hk *compressHook) BeforeHead(w *protocol.ResponseWriter, r *protocol.Request) {
	if hk.prev != nil {
		hk.prev.BeforeHead(w, r)
	}
	z := hk.z
	status := w.Status()
	if status < 200 || status == 204 || status == 206 || status == 304 {
		return
	}
	h := w.Header()
	if h.Peek("Content-Encoding") != "" || !z.typeOK(stringBytes(h.Peek("Content-Type"))) ||
		httplex.HasToken(stringBytes(h.Peek("Cache-Control")), "no-transform") {
		return
	}
	// The encoding depends on Accept-Encoding, whichever this client gets
	// (RFC 9110 section 12.5.5).
	if vary := stringBytes(h.Peek("Vary")); !httplex.HasToken(vary, "Accept-Encoding") && !httplex.HasToken(vary, "*") {
		h.Add("Vary", "Accept-Encoding")
	}
	if cl := h.ContentLength(); cl >= 0 && cl < z.minLength {
		return
	}
	c := negotiate(r.Header.Get("Accept-Encoding"), z.offered)
	if c == codingIdentity {
		return
	}
	b, _ := z.bodies.Get().(*compressBody)
	if b == nil {
		b = &compressBody{z: z}
	}
	h.Set("Content-Encoding", c.name())
	h.Del("Accept-Ranges")
	// A strong validator names the identity bytes; the compressed ones
	// differ from one compression to the next: weak.
	if etag := h.Peek("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		b.tag = append(append(b.tag[:0], "W/"...), etag...)
		h.SetBytes("ETag", b.tag)
	}
	if string(r.Method) == "HEAD" {
		w.SetBodyFilter(nil)
		z.bodies.Put(b)
		return
	}
	b.coding = c
	b.enc = z.encoder(c, w.RawBody())
	w.SetBodyFilter(b)
}

// compressBody is the body filter of one compressed response.
type compressBody struct {
	z      *compressor
	coding coding
	enc    encoder
	tag    []byte // scratch for the weak ETag
}

func (b *compressBody) Write(p []byte) (int, error) { return b.enc.Write(p) }

// Flush ends the current block so that the client can decode all that
// was written (gzip's and zstd's sync flush, brotli's empty metadata
// block): an event is never held back.
func (b *compressBody) Flush() error { return b.enc.Flush() }

// Close ends the stream and goes back to the pool.
func (b *compressBody) Close() error {
	err := b.enc.Close()
	b.z.release(b.coding, b.enc)
	b.enc = nil
	b.z.bodies.Put(b)
	return err
}

// stringBytes views s as bytes, without a copy; they must not change.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
