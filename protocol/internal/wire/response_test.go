package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseResponseHead(t *testing.T) {
	for _, tc := range []struct {
		in     string
		err    error
		status int
		cl     int64
		chunk  bool
		close  bool
		fields int
	}{
		{in: "HTTP/1.1 200 OK\r\n\r\n", status: 200, cl: -1},
		{in: "HTTP/1.1 204 No Content\r\nX: y\r\n\r\nrest", status: 204, cl: -1, fields: 1},
		{in: "HTTP/1.1 200\r\n\r\n", status: 200, cl: -1},
		{in: "HTTP/1.1 200 \r\n\r\n", status: 200, cl: -1},
		{in: "HTTP/1.1 404 Not\tFound \xff\r\n\r\n", status: 404, cl: -1},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", status: 200, cl: 5, fields: 1},
		{in: "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", status: 200, cl: 0, fields: 1},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", status: 200, cl: -1, chunk: true, fields: 1},
		{in: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", status: 200, cl: -1, close: true, fields: 1},
		{in: "HTTP/1.0 200 OK\r\n\r\n", status: 200, cl: -1, close: true},
		{in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", status: 200, cl: -1, fields: 1},
		{in: "HTTP/1.2 101 Switching\r\n\r\n", status: 101, cl: -1},

		// Incomplete.
		{in: "", err: ErrNeedMore},
		{in: "HTTP/1.1 20", err: ErrNeedMore},
		{in: "HTTP/1.1 200 OK", err: ErrNeedMore},
		{in: "HTTP/1.1 200 OK\r\n", err: ErrNeedMore},
		{in: "HTTP/1.1 200 OK\r\nX: y\r\n", err: ErrNeedMore},

		// Malformed.
		{in: "HTTP/2.0 200 OK\r\n\r\n", err: ErrMalformed},
		{in: "http/1.1 200 OK\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1  200 OK\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 2x", err: ErrMalformed},
		{in: "HTTP/1.1 099 Low\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 600 High\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 2000 OK\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 200 OK\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 200 O\x00K\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 200 OK\r\nX : y\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", err: ErrMalformed},
		{in: "HTTP/1.1 200 OK\r\nX: y\n\r\n", err: ErrMalformed},

		// Framing: the smuggling rules in the other direction.
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", err: ErrFraming},
		{in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrFraming},
	} {
		var h ResponseHead
		n, err := ParseResponseHead(&h, []byte(tc.in), 1<<10, 8)
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		end := bytes.Index([]byte(tc.in), []byte("\r\n\r\n")) + 4
		if n != end || h.Status != tc.status || h.ContentLength != tc.cl || h.Chunked != tc.chunk ||
			h.Close != tc.close || len(h.Fields) != tc.fields {
			t.Errorf("%q: n=%d status=%d cl=%d chunked=%v close=%v fields=%d, want %d %d %d %v %v %d",
				tc.in, n, h.Status, h.ContentLength, h.Chunked, h.Close, len(h.Fields),
				end, tc.status, tc.cl, tc.chunk, tc.close, tc.fields)
		}
	}
}

func TestParseResponseHeadLimits(t *testing.T) {
	var h ResponseHead
	head := "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"
	if _, err := ParseResponseHead(&h, []byte(head), len(head), 2); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	if _, err := ParseResponseHead(&h, []byte(head), len(head)-1, 2); err != ErrHeadTooLarge {
		t.Fatalf("one byte over: %v", err)
	}
	if _, err := ParseResponseHead(&h, []byte(head), len(head), 1); err != ErrHeadTooLarge {
		t.Fatalf("one field over: %v", err)
	}
	if _, err := ParseResponseHead(&h, []byte(head[:20]), 10, 2); err != ErrHeadTooLarge {
		t.Fatalf("incomplete and over: %v", err)
	}
	b := []byte(head)
	if a := testing.AllocsPerRun(100, func() { ParseResponseHead(&h, b, 1<<10, 8) }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// FuzzParseResponseHead checks that the parser never panics, that a head it
// accepts ends inside the input with CRLF CRLF, and that no prefix of an
// accepted head is accepted (a head is recognised only once it is whole).
func FuzzParseResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 101 X\r\nConnection: upgrade\r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ResponseHead
		n, err := ParseResponseHead(&h, b, 4<<10, 64)
		if err != nil {
			return
		}
		if n < 4 || n > len(b) || string(b[n-4:n]) != "\r\n\r\n" {
			t.Fatalf("accepted %q with n=%d", b, n)
		}
		if h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("%q: both framings", b)
		}
		if h.Status < 100 || h.Status > 599 {
			t.Fatalf("%q: status %d", b, h.Status)
		}
		for k := n - 1; k >= 0; k-- {
			if _, err := ParseResponseHead(&h, b[:k], 4<<10, 64); err != ErrNeedMore {
				t.Fatalf("prefix %q of %q: %v", b[:k], b, err)
			}
		}
	})
}
