package ipc

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/forkd/forkd/config"
)

func TestPairRoundTrip(t *testing.T) {
	master, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	worker, err := FromFile(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := master.Send(&Message{Type: TypeConfig, Config: cfg, Slot: 3, Generation: 2}); err != nil {
		t.Fatal(err)
	}
	if err := master.Send(&Message{Type: TypeConfig, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	m, err := worker.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeConfig || m.Slot != 3 || m.Generation != 2 || m.Config.Workers != cfg.Workers {
		t.Fatalf("received %+v", m)
	}
	// Packets keep their boundaries: the second message arrives alone.
	if m, err = worker.Recv(); err != nil || m.Slot != 0 {
		t.Fatalf("second message %+v %v", m, err)
	}
	hb := &Heartbeat{Requests: 7, OpenConns: 2, RSS: 1 << 20}
	if err := worker.Send(&Message{Type: TypeHeartbeat, Heartbeat: hb}); err != nil {
		t.Fatal(err)
	}
	if m, err = master.Recv(); err != nil || *m.Heartbeat != *hb {
		t.Fatalf("heartbeat %+v %v", m, err)
	}
	// The master going away reads as EOF in the worker.
	master.Close()
	if _, err := worker.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestExtraFilesAndWorkerEnv(t *testing.T) {
	f1, _ := os.Open(os.DevNull)
	f2, _ := os.Open(os.DevNull)
	ipcf, _ := os.Open(os.DevNull)
	defer f1.Close()
	defer f2.Close()
	defer ipcf.Close()
	files, env := ExtraFiles(ipcf, []Listener{{"127.0.0.1:80", f1}, {"unix:/run/a=b.sock", f2}}, 4, 9)
	if len(files) != 3 || files[0] != ipcf || files[2] != f2 {
		t.Fatalf("files %v", files)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	// WorkerEnv wraps fd numbers as the child would see them; use fds that
	// exist here so nothing is misread.
	t.Setenv(EnvIPCFD, strconv.Itoa(int(ipcf.Fd())))
	t.Setenv(EnvListenFDs, "127.0.0.1:80="+strconv.Itoa(int(f1.Fd()))+",unix:/run/a=b.sock="+strconv.Itoa(int(f2.Fd())))
	in, err := WorkerEnv()
	if err != nil {
		t.Fatal(err)
	}
	if in.Slot != 4 || in.Generation != 9 || len(in.Listeners) != 2 || in.Listeners[1].Address != "unix:/run/a=b.sock" {
		t.Fatalf("inherited %+v", in)
	}
	if IsWorker() {
		t.Fatal("WorkerEnv left the FORKD_* variables for children to inherit")
	}
	if _, err := WorkerEnv(); !errors.Is(err, ErrNotWorker) {
		t.Fatalf("second WorkerEnv: %v, want ErrNotWorker", err)
	}
}
