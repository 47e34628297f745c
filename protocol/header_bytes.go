package protocol

import "unsafe"

// AddBytes appends a field from byte slices, such as fields of an upstream
// response that alias a read buffer: both are copied, and neither is
// converted to a string on the heap. The rules of Add apply.
func (h *ResponseHeader) AddBytes(name, value []byte) {
	v := unsafe.String(unsafe.SliceData(value), len(value))
	n := unsafe.String(unsafe.SliceData(name), len(name))
	if !h.special(n, v) {
		return
	}
	// The name lives in the arena too. A later append may move the arena
	// to a larger array, but never writes to the old one, and reset keeps
	// only the newest; so the string stays valid as long as the field,
	// which reset clears with the arena.
	off := h.store(n)
	name = h.arena[off : off+len(name)]
	f := respField{name: unsafe.String(unsafe.SliceData(name), len(name))}
	f.off, f.n, f.inArena = h.store(v), len(v), true
	h.fields = append(h.fields, f)
}
