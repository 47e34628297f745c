package h2

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/protocol"
)

// serveH2C serves h on a loopback listener whose HTTP/2 connections go to
// a bridge, and returns its address.
func serveH2C(t testing.TB, h protocol.Handler, o Options) (string, *Server) {
	t.Helper()
	o.Handler = h
	b := New(o)
	srv := &protocol.Server{Handler: h, HandOff: b.ServeConn}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeWith(ln, protocol.ListenOptions{HTTP2: true})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		b.Shutdown(ctx)
	})
	return ln.Addr().String(), b
}

func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: h2cOnly()}}
}

func TestBodies(t *testing.T) {
	addr, _ := serveH2C(t, protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d %v %s", n, err, r.Trailer.Get("X-T"))
	}), Options{})
	c := h2cClient()
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(strings.Repeat("x", 100000))
		if chunked {
			pr, pw := io.Pipe()
			go func() {
				for range 100 {
					pw.Write([]byte(strings.Repeat("x", 1000)))
				}
				pw.Close()
			}()
			body = pr
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/", body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "100000 <nil>") {
			t.Errorf("chunked=%v: %d %q", chunked, resp.StatusCode, b)
		}
	}
}

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// TestProto checks that handlers see the protocol the client spoke, over
// h2c and over HTTP/1.1 on the same listener, natively (Request.Proto) and
// through net/http (FromHTTP), and that Stats counts only the streams.
func TestProto(t *testing.T) {
	native := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		fmt.Fprintf(w, "%s %d.%d", r.Proto(), r.ProtoMajor, r.ProtoMinor)
	})
	nethttp := protocol.FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
	}))
	for _, tc := range []struct {
		name    string
		h       protocol.Handler
		h2, h11 string
	}{
		// The native request keeps the version the engine parsed.
		{"native", native, "HTTP/2.0 1.1", "HTTP/1.1 1.1"},
		{"net/http", nethttp, "HTTP/2.0 2.0", "HTTP/1.1 1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streamDone := make(chan struct{}, 1)
			addr, b := serveH2C(t, tc.h, Options{OnRequestDone: func() { streamDone <- struct{}{} }})
			for _, c := range []struct {
				client *http.Client
				want   string
			}{
				{h2cClient(), tc.h2},
				{&http.Client{Timeout: 10 * time.Second}, tc.h11},
			} {
				resp, err := c.client.Get("http://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != c.want {
					t.Errorf("%s: got %q, want %q", resp.Proto, body, c.want)
				}
			}
			// The stream is counted once its answer is sent, maybe
			// after the client read it.
			select {
			case <-streamDone:
			case <-time.After(10 * time.Second):
				t.Fatal("the stream was never done")
			}
			if st := b.Stats(); st.Requests != 1 || st.Status[1] != 1 {
				t.Errorf("h2 Stats: %d requests, classes %v; want the one stream", st.Requests, st.Status)
			}
		})
	}
}

// TestTrailersWholeResponse checks that a response with trailers that the
// engine writes in one go reaches the client without a Content-Length
// (x/net would add one for a body it holds whole at the handler's end,
// and curl then stops reading before the trailers), with its trailers.
func TestTrailersWholeResponse(t *testing.T) {
	addr, _ := serveH2C(t, protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if string(r.Path) != "/empty" {
			io.WriteString(w, "hello")
		}
		w.Trailer().Set("X-Done", "yes")
	}), Options{})
	c := h2cClient()
	for _, path := range []string{"/", "/empty"} {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "hello"
		if path == "/empty" {
			want = ""
		}
		if string(b) != want || resp.ContentLength != -1 || resp.Trailer.Get("X-Done") != "yes" {
			t.Errorf("%s: %q, Content-Length %d, trailer %v", path, b, resp.ContentLength, resp.Trailer)
		}
	}
}
