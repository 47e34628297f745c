package wire

import "bytes"

// ParseChunkLine parses "chunk-size [chunk-ext] CR" (the LF already cut,
// RFC 9112 §7.1.1) and returns the size.
func ParseChunkLine(line []byte) (int64, bool) {
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return 0, false // bare LF
	}
	line = line[:len(line)-1]
	i := 0
	var n int64
	for i < len(line) && IsHex(line[i]) {
		if n > 1<<58 {
			return 0, false
		}
		n = n<<4 | int64(unhex(line[i]))
		i++
	}
	if i == 0 {
		return 0, false
	}
	skipWS := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	for i < len(line) {
		// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
		skipWS()
		if i == len(line) || line[i] != ';' {
			return 0, false
		}
		i++
		skipWS()
		s := i
		for i < len(line) && IsToken(line[i]) {
			i++
		}
		if i == s {
			return 0, false
		}
		skipWS()
		if i == len(line) || line[i] != '=' {
			continue
		}
		i++
		skipWS()
		if i < len(line) && line[i] == '"' {
			i++
			for {
				if i == len(line) {
					return 0, false
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					i++
					if i == len(line) || !IsValue(line[i]) {
						return 0, false
					}
				} else if !IsQdtext(c) {
					return 0, false
				}
				i++
			}
			continue
		}
		s = i
		for i < len(line) && IsToken(line[i]) {
			i++
		}
		if i == s {
			return 0, false
		}
	}
	return n, true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// MaxChunkLine bounds a chunk-size line with its extensions.
const MaxChunkLine = 4 << 10

// ChunkStep is what Chunked.Next finds at the start of the bytes it is
// given.
type ChunkStep uint8

// The steps of a chunked body.
const (
	ChunkNeed    ChunkStep = iota // more bytes: no complete chunk-size line or chunk end yet
	ChunkData                     // a chunk's data, Left bytes of it; the caller reads some and calls Consume
	ChunkTrailer                  // the last chunk: the trailer section (RFC 9112 §7.1.2) follows
	ChunkBad                      // malformed framing, or a chunk-size line over MaxChunkLine
)

// Decoder states.
const (
	chunkSize    = iota
	chunkData    // Left bytes of data to go
	chunkDataEnd // the CRLF after a chunk's data
	chunkTrailer
)

// Chunked decodes the framing of a chunked body (RFC 9112 §7.1) in the
// bytes its caller has read, for the server's request bodies and the
// proxy's response bodies alike: chunk-size lines, the data between them
// (which the caller copies out itself, straight from the socket when it
// likes), the CRLF after each chunk's data, and where the trailer section
// begins. The trailer fields are the caller's: each side keeps them its own
// way. The zero value is ready for a body's first chunk.
type Chunked struct {
	state uint8
	left  int64 // data bytes left in the current chunk
	total int64 // the sizes of the chunks begun so far
}

// Reset makes d ready for another body.
func (d *Chunked) Reset() { *d = Chunked{} }

// Next moves over the framing at the start of b and returns how many bytes
// of b it used and what comes after them.
func (d *Chunked) Next(b []byte) (int, ChunkStep) {
	n := 0
	for {
		switch d.state {
		case chunkData:
			return n, ChunkData
		case chunkTrailer:
			return n, ChunkTrailer
		case chunkDataEnd:
			if len(b)-n < 2 {
				return n, ChunkNeed
			}
			if b[n] != '\r' || b[n+1] != '\n' {
				return n, ChunkBad
			}
			n += 2
			d.state = chunkSize
		default: // chunkSize
			i := bytes.IndexByte(b[n:], '\n')
			if i < 0 {
				if len(b)-n > MaxChunkLine {
					return n, ChunkBad
				}
				return n, ChunkNeed
			}
			size, ok := ParseChunkLine(b[n : n+i])
			if !ok || i > MaxChunkLine {
				return n, ChunkBad
			}
			n += i + 1
			if size == 0 {
				d.state = chunkTrailer
				continue
			}
			d.state, d.left = chunkData, size
			if d.total > 1<<61 {
				d.total = 1 << 61 // a bound, not a count: no overflow
			}
			d.total += size
		}
	}
}

// Left returns the data bytes left in the current chunk.
func (d *Chunked) Left() int64 { return d.left }

// Total returns the sizes of the chunks begun so far, which callers bound.
func (d *Chunked) Total() int64 { return d.total }

// Consume records n bytes of the current chunk's data as read (n <= Left).
func (d *Chunked) Consume(n int) {
	d.left -= int64(n)
	if d.left == 0 {
		d.state = chunkDataEnd
	}
}
