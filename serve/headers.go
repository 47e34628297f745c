package serve

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// headerField is one field a headers block sets or adds.
type headerField struct {
	name  string
	nameB []byte    // name, for AddBytes
	value string    // the value when it has no placeholder
	tmpl  *template // the value when it has placeholders
}

// headerOps are the changes the headers blocks of a site and a route make
// to every response of the route: the fields removed, then those set
// (replacing any of the name), then those added. As a protocol.HeadHook it
// makes them just before the head is written, so they reach the handler's
// responses (an upstream's fields included), its errors, and the 401s and
// 403s of the checks in front of it.
type headerOps struct {
	remove   []string
	set, add []headerField
	// pool holds *headerScratch for templates: the route's own cleaned
	// path is gone by the time a head is written after the handler
	// returned.
	pool sync.Pool
}

// newHeaderOps merges headers blocks, the site's first: a route's set
// replaces the site's of the same name, adds and removes add up. It
// returns nil when there is nothing to do.
func newHeaderOps(blocks ...*config.Headers) (*headerOps, error) {
	o := &headerOps{}
	o.pool.New = func() any {
		return &headerScratch{p: reqPath{buf: make([]byte, 0, 256)}, buf: make([]byte, 0, 256)}
	}
	for _, b := range blocks {
		if b == nil {
			continue
		}
		for _, name := range sortedKeys(b.Set) {
			f, err := newHeaderField(name, b.Set[name])
			if err != nil {
				return nil, err
			}
			// A later set of the same name replaces the earlier one.
			o.set = deleteField(o.set, name)
			o.set = append(o.set, f)
		}
		for _, name := range sortedKeys(b.Add) {
			f, err := newHeaderField(name, b.Add[name])
			if err != nil {
				return nil, err
			}
			o.add = append(o.add, f)
		}
		o.remove = append(o.remove, b.Remove...)
	}
	if len(o.remove) == 0 && len(o.set) == 0 && len(o.add) == 0 {
		return nil, nil
	}
	return o, nil
}

func newHeaderField(name, value string) (headerField, error) {
	f := headerField{name: name, nameB: []byte(name), value: value}
	if strings.ContainsRune(value, '{') {
		t, err := newTemplate(value)
		if err != nil {
			return headerField{}, err
		}
		for _, p := range t.parts {
			if p.Kind != config.Literal {
				f.tmpl = t
				break
			}
		}
	}
	return f, nil
}

// deleteField removes the fields named name (in any case) from fs.
func deleteField(fs []headerField, name string) []headerField {
	out := fs[:0]
	for _, f := range fs {
		if !strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	return out
}

// BeforeHead makes the changes to w's header fields.
func (o *headerOps) BeforeHead(w *protocol.ResponseWriter, r *protocol.Request) {
	h := w.Header()
	for _, name := range o.remove {
		h.Del(name)
	}
	var sc *headerScratch
	for i := range o.set {
		f := &o.set[i]
		if f.tmpl == nil {
			h.Set(f.name, f.value)
			continue
		}
		sc = o.scratch(sc, r)
		sc.buf = f.tmpl.appendTo(sc.buf[:0], r, &sc.p)
		h.SetBytes(f.name, sc.buf)
	}
	for i := range o.add {
		f := &o.add[i]
		if f.tmpl == nil {
			h.Add(f.name, f.value)
			continue
		}
		sc = o.scratch(sc, r)
		sc.buf = f.tmpl.appendTo(sc.buf[:0], r, &sc.p)
		h.AddBytes(f.nameB, sc.buf)
	}
	if sc != nil {
		o.pool.Put(sc)
	}
}

// headerScratch is what expanding templates needs: r's cleaned path and
// a buffer (SetBytes and AddBytes copy what they keep).
type headerScratch struct {
	p   reqPath
	buf []byte
}

// scratch returns sc, or one from the pool with r's path cleaned.
func (o *headerOps) scratch(sc *headerScratch, r *protocol.Request) *headerScratch {
	if sc != nil {
		return sc
	}
	sc = o.pool.Get().(*headerScratch)
	if !sc.p.clean(r.Path) {
		sc.p.path = append(sc.p.buf[:0], '/')
		sc.p.flags = 0
	}
	return sc
}

// withHeaders registers a route's header changes (a *headerOps, or an
// *idHook with them) for its response.
type withHeaders struct {
	hook protocol.HeadHook
	next routeHandler
}

func (m *withHeaders) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	w.SetHeadHook(m.hook)
	m.next.serveRoute(w, r, p)
}

// sortedKeys returns m's keys in order, so that fields go out in the same
// order on every response.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
