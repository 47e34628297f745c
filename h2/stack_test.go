package h2

import (
	"io"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/forkd/forkd/protocol"
)

// useStack runs with a frame of 8 KiB, as deep as the engine's path for a
// static file goes below a handler.
//
//go:noinline
func useStack(i int) byte {
	var b [8 << 10]byte
	b[i] = 1
	return b[len(b)-1-i]
}

// TestStreamStackGrown checks that a stream's handler runs on a stack
// grown beforehand (growStack): a handler that needs 8 KiB more of it
// does not make the runtime copy the stack, which it would have to on the
// few KiB a new goroutine starts with, as it did two or three times per
// stream for a static file.
func TestStreamStackGrown(t *testing.T) {
	// No collection meanwhile: it could shrink the stack between the
	// handler's two looks at it.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	moved := make(chan bool, 1)
	addr, _ := serveH2C(t, protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		var x byte
		before := uintptr(unsafe.Pointer(&x))
		useStack(int(x))
		// A copied stack has x at another address.
		moved <- uintptr(unsafe.Pointer(&x)) != before
		io.WriteString(w, "ok")
	}), Options{})
	resp, err := h2cClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "ok" {
		t.Fatalf("got %s %q", resp.Proto, b)
	}
	if <-moved {
		t.Error("the stream's stack was copied (grown) while its handler ran")
	}
}
