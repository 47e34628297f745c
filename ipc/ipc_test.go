package ipc

import (
	"errors"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/metrics"
)

// pair returns both ends of a Pair as Conns, closed when the test ends.
func pair(t *testing.T) (master, worker *Conn) {
	t.Helper()
	master, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	worker, err = FromFile(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { worker.Close() })
	return master, worker
}

func TestPairRoundTrip(t *testing.T) {
	master, worker := pair(t)
	hb := &Heartbeat{Requests: 7, OpenConns: 2, RSS: 1 << 20, Status: metrics.Classes{0, 5, 1, 1, 0}}
	if err := worker.Send(&Message{Type: TypeHeartbeat, Heartbeat: hb}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Send(&Message{Type: TypeReady}); err != nil {
		t.Fatal(err)
	}
	if !master.Pending() {
		t.Fatal("Pending is false with two packets queued")
	}
	m, err := master.Recv()
	if err != nil || !reflect.DeepEqual(m.Heartbeat, hb) {
		t.Fatalf("heartbeat %+v %v", m, err)
	}
	// Packets keep their boundaries: the second message arrives alone.
	if m, err = master.Recv(); err != nil || m.Type != TypeReady {
		t.Fatalf("second message %+v %v", m, err)
	}
	if master.Pending() {
		t.Fatal("Pending is true with nothing queued")
	}
	if master.BufferSize() > initialBuffer {
		t.Fatalf("buffer grew to %d for small messages", master.BufferSize())
	}
	// A big message grows the buffer to its size, once.
	big := strings.Repeat("x", 100<<10)
	if err := worker.Send(&Message{Type: TypeBootError, Error: big}); err != nil {
		t.Fatal(err)
	}
	if m, err = master.Recv(); err != nil || m.Error != big {
		t.Fatalf("big message: %v", err)
	}
	if n := master.BufferSize(); n < 100<<10 || n > 101<<10 {
		t.Fatalf("buffer is %d bytes after a 100 KiB message", n)
	}
	// The master going away reads as EOF in the worker.
	master.Close()
	if _, err := worker.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestRecvDropsOversizedPacket(t *testing.T) {
	master, worker := pair(t)
	master.max = 1024
	if err := worker.Send(&Message{Type: TypeBootError, Error: strings.Repeat("x", 2000)}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Send(&Message{Type: TypeReady}); err != nil {
		t.Fatal(err)
	}
	if _, err := master.Recv(); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversized packet: %v, want ErrTooBig", err)
	}
	if m, err := master.Recv(); err != nil || m.Type != TypeReady {
		t.Fatalf("next packet %+v %v", m, err)
	}
	if master.BufferSize() > 1024 {
		t.Fatalf("buffer grew to %d for a dropped packet", master.BufferSize())
	}
}

func TestConfigFileAnySize(t *testing.T) {
	cfg := config.Default()
	// A 5 MB configuration: far over any socket buffer.
	cfg.Sites = append(cfg.Sites, config.Site{Name: "big", Hosts: []string{"*"}, Routes: []config.Route{{
		Prefix: "/", Respond: &config.Respond{Status: 200, Body: strings.Repeat("b", 5<<20)},
	}}})
	f, err := ConfigFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Sealed: nobody can change what workers read.
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("write to a sealed configuration file succeeded")
	}
	// Two readers (two workers) each read it whole, whatever the offset.
	for range 2 {
		got, err := ReadConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Sites) != len(cfg.Sites) || got.Sites[len(got.Sites)-1].Routes[0].Respond.Body != cfg.Sites[len(cfg.Sites)-1].Routes[0].Respond.Body {
			t.Fatal("configuration did not survive the round trip")
		}
	}
}

func TestEncodeDecodeFDs(t *testing.T) {
	in := []NamedFD{{"127.0.0.1:80", 4}, {"unix:/run/a=b.sock", 5}, {"[::1]:8080", 6}}
	out, err := DecodeFDs("K", EncodeFDs(in))
	if err != nil || len(out) != 3 || out[1] != in[1] || out[2] != in[2] {
		t.Fatalf("round trip: %v %v", out, err)
	}
	for _, bad := range []string{"nofd", "a=x", "a=-1", "a=1,,b=2"} {
		if _, err := DecodeFDs("K", bad); err == nil || !strings.HasPrefix(err.Error(), "K: ") {
			t.Errorf("DecodeFDs(%q) = %v, want an error naming K", bad, err)
		}
	}
	if out, err := DecodeFDs("K", ""); err != nil || out != nil {
		t.Fatalf("empty: %v %v", out, err)
	}
}

func TestExtraFilesAndWorkerEnv(t *testing.T) {
	f1, _ := os.Open(os.DevNull)
	f2, _ := os.Open(os.DevNull)
	ipcf, _ := os.Open(os.DevNull)
	cfgf, _ := os.Open(os.DevNull)
	defer f1.Close()
	defer f2.Close()
	defer ipcf.Close()
	defer cfgf.Close()
	files, env := ExtraFiles(ipcf, cfgf, []Listener{{"127.0.0.1:80", f1}, {"unix:/run/a=b.sock", f2}}, 4, 9)
	if len(files) != 4 || files[0] != ipcf || files[1] != cfgf || files[3] != f2 {
		t.Fatalf("files %v", files)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if os.Getenv(EnvListenFDs) != "127.0.0.1:80=5,unix:/run/a=b.sock=6" {
		t.Fatalf("%s=%s", EnvListenFDs, os.Getenv(EnvListenFDs))
	}
	// WorkerEnv wraps fd numbers as the child would see them, in files
	// that own them: give it duplicates of its own, closed through those
	// files, so that no number another test reuses is closed later (by a
	// finalizer).
	dup := func(f *os.File) string {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(fd)
	}
	t.Setenv(EnvIPCFD, dup(ipcf))
	t.Setenv(EnvConfigFD, dup(cfgf))
	t.Setenv(EnvListenFDs, "127.0.0.1:80="+dup(f1)+",unix:/run/a=b.sock="+dup(f2))
	in, err := WorkerEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.IPC.Close()
		in.Config.Close()
		for _, l := range in.Listeners {
			l.File.Close()
		}
	}()
	if in.Slot != 4 || in.Generation != 9 || len(in.Listeners) != 2 || in.Listeners[1].Address != "unix:/run/a=b.sock" || in.Config == nil {
		t.Fatalf("inherited %+v", in)
	}
	if IsWorker() {
		t.Fatal("WorkerEnv left the FORKD_* variables for children to inherit")
	}
	if _, err := WorkerEnv(); !errors.Is(err, ErrNotWorker) {
		t.Fatalf("second WorkerEnv: %v, want ErrNotWorker", err)
	}
}
