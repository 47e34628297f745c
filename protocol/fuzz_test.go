package protocol

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forkd/forkd/protocol/internal/wire"
)

// FuzzParseRequest checks that the parser never panics, consumes no more
// than it was given, never asks for more bytes once a head has ended, and
// that what it accepts is well formed.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range badRequests {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range goodRequests {
		f.Add([]byte(tc.raw))
	}
	lim := testLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		n, st := parseRequest(&r, data, &lim)
		if st == statusNeedMore && headEnded(data) {
			t.Fatalf("a complete head asks for more bytes")
		}
		if len(data) > 0 && !wire.CanStartRequest(data[0]) && st != 400 {
			// conn.parseHead refuses such a head before it ends.
			t.Fatalf("first byte %#02x: status %d, want 400", data[0], st)
		}
		if st == statusNeedMore || st != 0 {
			if st != statusNeedMore && (st < 400 || st > 505) {
				t.Fatalf("status %d", st)
			}
			return
		}
		if n <= 0 || n > len(data) || !bytes.HasSuffix(data[:n], []byte("\r\n\r\n")) {
			t.Fatalf("consumed %d of %d", n, len(data))
		}
		for _, c := range r.Method {
			if !wire.IsToken(c) {
				t.Fatalf("method %q", r.Method)
			}
		}
		for _, c := range r.Target {
			if !wire.IsTarget(c) {
				t.Fatalf("target %q", r.Target)
			}
		}
		if r.ProtoMajor != 1 || r.ProtoMinor > 1 || len(r.Path) == 0 {
			t.Fatalf("proto %d.%d path %q", r.ProtoMajor, r.ProtoMinor, r.Path)
		}
		for i := 0; i < r.Header.Len(); i++ {
			fl := r.Header.At(i)
			if len(fl.Name) == 0 || bytes.ContainsAny(fl.Value, "\r\n\x00") {
				t.Fatalf("field %q: %q", fl.Name, fl.Value)
			}
		}
		// A second parse of the same bytes gives the same result.
		var r2 Request
		if n2, st2 := parseRequest(&r2, data, &lim); n2 != n || st2 != st || fmt.Sprint(r2.Header) != fmt.Sprint(r.Header) {
			t.Fatal("parse is not deterministic")
		}
	})
}

// FuzzConn runs arbitrary input through the whole connection loop (heads,
// bodies, chunked decoding, trailers, pipelining) and checks that every
// answer is a well-formed response stream.
func FuzzConn(f *testing.F) {
	for _, tc := range badRequests {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range extraRequests {
		f.Add([]byte(tc.raw))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d %d %d", len(r.Method), n, r.Trailer.Len())
		}), Limits: testLimits()}
		s.init()
		defer s.Close()
		s.sem <- struct{}{}
		s.open.Add(1)
		c := newConn(s)
		m := &memConn{in: bytes.NewReader(data)}
		c.init(m)
		c.serve()
		out := m.out.String()
		if out != "" && !strings.HasPrefix(out, "HTTP/1.") {
			t.Fatalf("output %q", out)
		}
		// The server itself never echoes input: the handler writes none.
		if strings.Contains(out, "\x00") {
			t.Fatal("echoed a NUL")
		}
	})
}

// FuzzChunkLine checks the chunk-size line parser against a re-check of
// its result.
func FuzzChunkLine(f *testing.F) {
	for _, s := range []string{"5\r", "a;b=c\r", "0;x=\"y\"\r", "5 \r", "ffffffffffffffffff\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		n, ok := wire.ParseChunkLine(line)
		if !ok {
			return
		}
		if n < 0 || !wire.IsHex(line[0]) || line[len(line)-1] != '\r' {
			t.Fatalf("%q: %d", line, n)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz from the test corpora when
// FORKD_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("FORKD_WRITE_SEEDS") == "" {
		t.Skip("set FORKD_WRITE_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target, name string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name = strings.NewReplacer(" ", "_", ".", "_", "-", "_").Replace(name)
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range badRequests {
		write("FuzzParseRequest", "bad_"+tc.name, []byte(tc.raw))
		write("FuzzConn", "bad_"+tc.name, []byte(tc.raw))
	}
	for _, tc := range goodRequests {
		write("FuzzParseRequest", "good_"+tc.name, []byte(tc.raw))
	}
	for _, tc := range extraRequests {
		write("FuzzConn", "extra_"+tc.name, []byte(tc.raw))
	}
	for i, s := range []string{"5\r", "a;b=c\r", "0;x=\"y\\\"z\"\r", "5 \r", "1;=\r"} {
		write("FuzzChunkLine", fmt.Sprint("seed", i), []byte(s))
	}
}

// headEnded reports whether data, after the empty lines the parser skips,
// holds the end of a head: a line feed followed by an empty line (or by a
// bare LF, which the parser refuses). The server stops reading there and
// must answer whatever came before.
func headEnded(data []byte) bool {
	for bytes.HasPrefix(data, []byte("\r\n")) {
		data = data[2:]
	}
	return bytes.Contains(data, []byte("\n\r\n")) || bytes.Contains(data, []byte("\n\n"))
}
