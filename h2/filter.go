package h2

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The read filter: two answers of x/net's differ from RFC 9113, and are
// put right in the frames x/net reads, before it reads them.
//
//   - A SETTINGS frame that repeats a parameter is a PROTOCOL_ERROR to
//     x/net; §6.5.3 says to process the values in order, which comes to the
//     last value of each. The filter keeps the last value of each
//     parameter (an invalid one kept wherever it is, for x/net to refuse).
//   - A request with a connection-specific field or a TE other than
//     "trailers" gets a 400 from x/net; §8.2.2 makes it malformed, a stream
//     error PROTOCOL_ERROR. The filter decodes every field block with an
//     HPACK decoder of its own, fed the same blocks in the same order as
//     x/net's, so its dynamic table is x/net's. When a block holds such a
//     field it appends one field x/net refuses (an upper-case name, not
//     indexed, so the table is unchanged): x/net decodes the whole block,
//     keeping its table in step with the client's, and resets the stream
//     with PROTOCOL_ERROR.
//
// Every other frame passes as it came. When its own decoder fails (x/net's
// fails the connection then), the filter stops looking.

// filterConn filters the frames read from a connection (after the client
// preface).
type filterConn struct {
	net.Conn
	br *bufio.Reader // x/net reads each frame header and payload apart: one read(2) for many

	preface int    // bytes of the client preface still to pass
	out     []byte // filtered bytes x/net has still to read
	pass    int    // payload bytes of the current frame to pass as they come
	hdr     [9]byte
	buf     []byte

	dec     *hpack.Decoder
	bad     bool // the block being decoded is malformed
	teSeen  bool
	inBlock bool // a field block continues in CONTINUATION frames
	off     bool // the filter gave up
}

// filterMaxFrame bounds the frames the filter reads whole; a longer one
// passes as it comes (x/net refuses it unless its limit is higher).
const filterMaxFrame = 1 << 20

func newFilterConn(c net.Conn, maxHeaderBytes int) *filterConn {
	f := &filterConn{Conn: c, br: bufio.NewReaderSize(c, 16<<10), preface: len(clientPreface)}
	f.dec = hpack.NewDecoder(4096, f.field) // x/net's initialHeaderTableSize
	// Never shorter than x/net's (its header list limit, a little more
	// than maxHeaderBytes): the filter must not fail where x/net does not.
	f.dec.SetMaxStringLength(2*max(maxHeaderBytes, 1<<10) + 8<<10)
	return f
}

// connSpecific are the fields RFC 9113 §8.2.2 forbids (x/net's list).
var connSpecific = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true,
}

func (f *filterConn) field(hf hpack.HeaderField) {
	switch {
	case connSpecific[hf.Name]:
		f.bad = true
	case hf.Name == "te":
		if f.teSeen || hf.Value != "trailers" && hf.Value != "" {
			f.bad = true
		}
		f.teSeen = true
	}
}

func (f *filterConn) Read(p []byte) (int, error) {
	if len(f.out) > 0 {
		n := copy(p, f.out)
		f.out = f.out[n:]
		return n, nil
	}
	if f.preface > 0 || f.pass > 0 || f.off {
		k := len(p)
		if f.preface > 0 {
			k = min(k, f.preface)
		} else if f.pass > 0 {
			k = min(k, f.pass)
		}
		n, err := f.br.Read(p[:k])
		if f.preface > 0 {
			f.preface -= n
		} else if f.pass > 0 {
			f.pass -= n
		}
		return n, err
	}
	// A frame's header.
	if _, err := io.ReadFull(f.br, f.hdr[:]); err != nil {
		f.off = true
		return 0, err
	}
	length := int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
	typ, flags := http2.FrameType(f.hdr[3]), http2.Flags(f.hdr[4])
	look := length <= filterMaxFrame && (typ == http2.FrameSettings && flags&http2.FlagSettingsAck == 0 ||
		typ == http2.FrameHeaders || typ == http2.FrameContinuation && f.inBlock)
	if !look {
		f.pass = length
		n := copy(p, f.hdr[:])
		f.out = append(f.out[:0], f.hdr[n:]...)
		return n, nil
	}
	if cap(f.buf) < 9+length {
		f.buf = make([]byte, 9+length, max(9+length, 1<<10))
	}
	b := f.buf[:9+length]
	copy(b, f.hdr[:])
	if _, err := io.ReadFull(f.br, b[9:]); err != nil {
		f.off = true
		f.out = b[:9]
		return f.Read(p)
	}
	switch typ {
	case http2.FrameSettings:
		b = dedupSettings(b)
	default:
		b = f.block(b)
	}
	n := copy(p, b)
	f.out = b[n:]
	return n, nil
}

// block decodes the field block fragment in HEADERS or CONTINUATION frame
// b, and marks the block at its end if it is malformed (see above).
func (f *filterConn) block(b []byte) []byte {
	flags := http2.Flags(b[4])
	frag := b[9:]
	if http2.FrameType(b[3]) == http2.FrameHeaders {
		if f.inBlock {
			// x/net's connection error; no more filtering.
			f.off = true
			return b
		}
		f.bad, f.teSeen, f.inBlock = false, false, true
		if flags&http2.FlagHeadersPadded != 0 {
			if len(frag) < 1 || int(frag[0]) > len(frag)-1 {
				f.off = true
				return b
			}
			frag = frag[1 : len(frag)-int(frag[0])]
		}
		if flags&http2.FlagHeadersPriority != 0 {
			if len(frag) < 5 {
				f.off = true
				return b
			}
			frag = frag[5:]
		}
	}
	if _, err := f.dec.Write(frag); err != nil {
		f.off = true
		return b
	}
	if flags&http2.FlagHeadersEndHeaders == 0 { // (CONTINUATION's is the same)
		return b
	}
	f.inBlock = false
	if err := f.dec.Close(); err != nil {
		f.off = true
		return b
	}
	if !f.bad {
		return b
	}
	// The marker, at the end of the fragment: a literal field without
	// indexing, new name "Malformed", empty value.
	marker := []byte{0x00, 9, 'M', 'a', 'l', 'f', 'o', 'r', 'm', 'e', 'd', 0}
	out := make([]byte, 0, len(b)+len(marker))
	if http2.FrameType(b[3]) == http2.FrameHeaders && flags&http2.FlagHeadersPadded != 0 {
		// Drop the padding, and the flag: the marker goes after the
		// fragment.
		out = append(out, b[:9]...)
		out[4] &^= byte(http2.FlagHeadersPadded)
		pri := 0
		if flags&http2.FlagHeadersPriority != 0 {
			pri = 5
		}
		out = append(out, b[10:10+pri]...)
		out = append(out, frag...)
	} else {
		out = append(out, b...)
	}
	out = append(out, marker...)
	setLength(out, len(out)-9)
	return out
}

func setLength(b []byte, n int) {
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
}

// dedupSettings keeps the last value of each parameter in SETTINGS frame
// b; from an invalid value on, x/net's connection error, it drops the rest.
func dedupSettings(b []byte) []byte {
	p := b[9:]
	if len(p)%6 != 0 || len(p)/6 > 100 || binary.BigEndian.Uint32(b[5:9]) != 0 {
		return b // x/net's errors
	}
	n := len(p) / 6
	id := func(i int) uint16 { return binary.BigEndian.Uint16(p[6*i:]) }
	for i := range n {
		s := http2.Setting{ID: http2.SettingID(id(i)), Val: binary.BigEndian.Uint32(p[6*i+2:])}
		if s.Valid() != nil {
			n = i + 1
			break
		}
	}
	later := func(i int) bool {
		for j := i + 1; j < n; j++ {
			if id(j) == id(i) {
				return true
			}
		}
		return false
	}
	dup := false
	for i := range n {
		dup = dup || later(i)
	}
	if !dup && n == len(p)/6 {
		return b
	}
	out := append([]byte(nil), b[:9]...)
	for i := range n {
		if !later(i) {
			out = append(out, p[6*i:6*i+6]...)
		}
	}
	setLength(out, len(out)-9)
	return out
}
