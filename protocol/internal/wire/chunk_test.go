package wire

import "testing"

// decodeChunked runs d over in, given step bytes at a time as a caller
// reading a socket would, and returns the data, whether it reached the
// trailer section, and where it stopped.
func decodeChunked(in string, step int) (data string, trailer bool, used int, bad bool) {
	var d Chunked
	avail := min(step, len(in))
	r := 0
	for {
		n, st := d.Next([]byte(in[r:avail]))
		r += n
		switch st {
		case ChunkNeed:
			if avail == len(in) {
				return data, false, r, false
			}
			avail = min(avail+step, len(in))
		case ChunkBad:
			return data, false, r, true
		case ChunkTrailer:
			return data, true, r, false
		case ChunkData:
			if r == avail {
				if avail == len(in) {
					return data, false, r, false
				}
				avail = min(avail+step, len(in))
				continue
			}
			k := int(min(int64(avail-r), d.Left()))
			data += in[r : r+k]
			r += k
			d.Consume(k)
		}
	}
}

// TestChunked decodes chunked framings whole and a byte at a time: the
// data, where the trailer section starts, and what is refused on sight.
func TestChunked(t *testing.T) {
	long := "1;" + string(make([]byte, MaxChunkLine)) + "\r\n"
	for _, tc := range []struct {
		in      string
		data    string
		trailer bool
		used    int // bytes up to the trailer section, or where it stopped
		bad     bool
	}{
		{"5\r\nhello\r\n0\r\n\r\n", "hello", true, 13, false},
		{"5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", "hello world", true, 24, false},
		{"A;ext=1;q=\"x\"\r\n0123456789\r\n0\r\n\r\n", "0123456789", true, 30, false},
		{"5\r\nhel", "hel", false, 6, false},                             // more to come
		{"zz\r\nhello\r\n0\r\n\r\n", "", false, 0, true},                 // not hex
		{"5\nhello\r\n0\r\n\r\n", "", false, 0, true},                    // bare LF
		{"5\r\nhelloXX0\r\n\r\n", "hello", false, 8, true},               // no CRLF after the data
		{"5 \r\nhello\r\n0\r\n\r\n", "", false, 0, true},                 // whitespace, no extension
		{long, "", false, 0, true},                                       // line too long
		{"1" + string(make([]byte, MaxChunkLine+1)), "", false, 0, true}, // no LF in sight
	} {
		for _, step := range []int{len(tc.in), 1} {
			data, trailer, used, bad := decodeChunked(tc.in, step)
			if data != tc.data || trailer != tc.trailer || used != tc.used || bad != tc.bad {
				t.Errorf("%q by %d: data %q trailer %v used %d bad %v; want %q %v %d %v",
					tc.in, step, data, trailer, used, bad, tc.data, tc.trailer, tc.used, tc.bad)
			}
		}
	}
	var d Chunked
	if n, st := d.Next([]byte("10\r\n")); n != 4 || st != ChunkData || d.Left() != 16 || d.Total() != 16 {
		t.Fatalf("Next: %d %d left %d total %d", n, st, d.Left(), d.Total())
	}
	d.Consume(16)
	if n, st := d.Next([]byte("\r\n20\r\n")); n != 6 || st != ChunkData || d.Total() != 48 {
		t.Fatalf("second chunk: %d %d total %d", n, st, d.Total())
	}
	d.Reset()
	if d.Total() != 0 || d.Left() != 0 {
		t.Fatal("Reset kept state")
	}
}
