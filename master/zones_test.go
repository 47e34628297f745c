package master

import (
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/ipc"
)

func zoneConfig(burst int, shared uint64, names ...string) *config.Config {
	c := &config.Config{}
	for _, n := range names {
		c.RateLimits = append(c.RateLimits, config.RateLimit{Name: n, Key: "{remote_addr}", Rate: "10r/s",
			Interval: 100 * time.Millisecond, Burst: burst, Size: 64 << 10, Status: 429})
	}
	if shared > 0 {
		c.Shared = &config.Shared{Size: shared}
	}
	return c
}

// TestMakeZonesKeepsUnchanged: a reload keeps the zone of an unchanged
// block (same object, same counts), makes a new one for a changed or new
// block, and the old set's dropped zones are closed at commit.
func TestMakeZonesKeepsUnchanged(t *testing.T) {
	cur, err := makeZones(zoneConfig(1, 64<<10, "a", "b"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur.limiters["a"].Allow([]byte("client"))

	next, err := makeZones(zoneConfig(1, 64<<10, "a", "c"), cur, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.limiters["a"] != cur.limiters["a"] || next.store != cur.store {
		t.Fatal("an unchanged block got a new zone")
	}
	if next.limiters["c"] == nil || next.limiter("b") != nil {
		t.Fatalf("zones %v", next.limiters)
	}
	changed, err := makeZones(zoneConfig(2, 128<<10, "a"), cur, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed.limiters["a"] == cur.limiters["a"] || changed.store == cur.store {
		t.Fatal("a changed block kept its zone")
	}
	changed.closeExcept(cur) // a refused reload
	if st := cur.limiters["a"].Stats(); st.Allowed != 1 {
		t.Fatalf("the kept zone lost its counts: %+v", st)
	}
	cur.closeExcept(next) // the commit
	if ok, _ := next.limiters["a"].Allow([]byte("client")); !ok {
		t.Fatal("burst 1: the second request must pass")
	}
	next.closeExcept(nil)
}

// TestAdoptZones: a master started by USR2 keeps the zones handed over
// whose blocks are unchanged, and makes the others anew.
func TestAdoptZones(t *testing.T) {
	old, err := makeZones(zoneConfig(1, 64<<10, "a", "b"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.closeExcept(nil)
	old.limiters["a"].Allow([]byte("client"))
	adopted := make(map[string]*os.File)
	for _, z := range old.files() {
		fd, err := syscall.Dup(int(z.File.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		adopted[z.Address] = os.NewFile(uintptr(fd), z.Address)
	}
	zs, err := makeZones(zoneConfig(1, 64<<10, "a"), nil, adopted)
	if err != nil {
		t.Fatal(err)
	}
	defer zs.closeExcept(nil)
	if ok, _ := zs.limiters["a"].Allow([]byte("client")); !ok {
		t.Fatal("burst 1: the second request must pass")
	}
	if ok, _ := zs.limiters["a"].Allow([]byte("client")); ok {
		t.Fatal("the adopted zone lost the first request")
	}
	if _, ok := adopted[ipc.ZoneName("a")]; ok {
		t.Fatal("the adopted file was not taken")
	}
	if _, ok := adopted[ipc.ZoneName("b")]; len(adopted) != 1 || !ok || zs.store == nil {
		t.Fatalf("left %v, store %v: only the dropped block's zone should be", adopted, zs.store)
	}
	for _, f := range adopted {
		f.Close()
	}
}

// TestReapReleasesStoreLocks: a worker SIGKILLed inside a store write
// leaves its bucket locked under its pid; reaping it frees the lock, so a
// new process that gets the same pid cannot hold the bucket for good.
func TestReapReleasesStoreLocks(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	zs, err := makeZones(zoneConfig(0, 1<<20), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zs.closeExcept(nil) })
	m.zones = zs
	m.reconcile(f.now)
	pid := m.pids(1)[0]
	if n := zs.store.Release(pid); n != 0 {
		t.Fatalf("%d locks held before any write", n)
	}
	if err := zs.store.Set([]byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	zs.store.HoldForTest([]byte("k"), pid)
	m.reap(signaled(pid, syscall.SIGKILL))
	if n := zs.store.Release(pid); n != 0 {
		t.Fatalf("the reaped worker's lock is still held (%d)", n)
	}
	// The bucket is usable at once.
	if err := zs.store.Set([]byte("k"), []byte("after"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestUpstreamsDown: the status sums the upstreams each worker's last
// heartbeat holds down, out of all the workers.
func TestUpstreamsDown(t *testing.T) {
	ws := map[int]*worker{
		1: {pid: 1, beat: ipc.Heartbeat{UpstreamsDown: []string{"b:1", "a:1"}}},
		2: {pid: 2, beat: ipc.Heartbeat{UpstreamsDown: []string{"a:1"}}},
		3: {pid: 3},
	}
	got := upstreamsDown(ws)
	want := []control.UpstreamStatus{{Address: "a:1", DownIn: 2, Of: 3}, {Address: "b:1", DownIn: 1, Of: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("upstreamsDown = %+v, want %+v", got, want)
	}
	if got := upstreamsDown(map[int]*worker{1: {pid: 1}}); len(got) != 0 {
		t.Fatalf("no worker holds one down: %+v", got)
	}
}
