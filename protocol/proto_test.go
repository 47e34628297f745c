package protocol

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// streamPipe is one end of a net.Pipe marked as an HTTP/2 stream's.
type streamPipe struct{ net.Conn }

func (streamPipe) HTTP2Stream() {}

// TestProto checks what handlers see of the client's protocol: the
// version of the message on a connection, HTTP/2.0 on an HTTP2Stream.
func TestProto(t *testing.T) {
	native := HandlerFunc(func(w *ResponseWriter, r *Request) {
		fmt.Fprintf(w, "%s %d.%d", r.Proto(), r.ProtoMajor, r.ProtoMinor)
	})
	nethttp := FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
	}))
	for _, tc := range []struct {
		name   string
		h      Handler
		stream bool
		minor  int
		want   string
	}{
		{"native/1.0", native, false, 0, "HTTP/1.0 1.0"},
		{"native/1.1", native, false, 1, "HTTP/1.1 1.1"},
		{"native/stream", native, true, 1, "HTTP/2.0 1.1"},
		{"net/http/1.0", nethttp, false, 0, "HTTP/1.0 1.0"},
		{"net/http/1.1", nethttp, false, 1, "HTTP/1.1 1.1"},
		{"net/http/stream", nethttp, true, 1, "HTTP/2.0 2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Handler: tc.h}
			defer s.Close()
			client, server := net.Pipe()
			defer client.Close()
			var nc net.Conn = server
			if tc.stream {
				nc = streamPipe{server}
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.ServeConn(context.Background(), nc)
			}()
			go fmt.Fprintf(client, "GET / HTTP/1.%d\r\nHost: x\r\nConnection: close\r\n\r\n", tc.minor)
			resp, err := http.ReadResponse(bufio.NewReader(client), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tc.want {
				t.Errorf("got %q, want %q", body, tc.want)
			}
			client.Close()
			<-done
		})
	}
}
