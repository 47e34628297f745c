package zone

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newTestLimiter(t testing.TB, size int64, interval time.Duration, burst int) *Limiter {
	t.Helper()
	l, err := NewLimiter(Spec{Name: "test", Size: size, Interval: interval, Tau: time.Duration(burst) * interval, Key: "{remote_addr}"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestGCRA drives the algorithm with explicit times: burst+1 at once, then
// one per interval, and the retry time it announces.
func TestGCRA(t *testing.T) {
	type step struct {
		at    uint64 // µs
		ok    bool
		retry uint64
	}
	tests := []struct {
		name     string
		interval time.Duration
		burst    int
		steps    []step
	}{
		{"10r/s burst 0", 100 * time.Millisecond, 0, []step{
			{1000, true, 0}, {1000, false, 100_000}, {50_000, false, 51_000},
			{101_000, true, 0}, {150_000, false, 51_000}, {500_000, true, 0}, {500_001, false, 99_999},
		}},
		{"10r/s burst 2", 100 * time.Millisecond, 2, []step{
			{1000, true, 0}, {1000, true, 0}, {1000, true, 0}, {1000, false, 100_000},
			{101_000, true, 0}, {101_000, false, 100_000}, {1_000_000, true, 0}, {1_000_000, true, 0},
			{1_000_000, true, 0}, {1_000_000, false, 100_000},
		}},
		{"60r/m burst 1", time.Second, 1, []step{
			{0, true, 0}, {0, true, 0}, {0, false, 1_000_000}, {999_999, false, 1}, {1_000_000, true, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLimiter(t, MinSize, tt.interval, tt.burst)
			h := l.z.hash([]byte("client"))
			for i, s := range tt.steps {
				ok, retry := l.allowAt(h, s.at)
				if ok != s.ok || retry != s.retry {
					t.Fatalf("step %d at %dµs: got (%v, %d), want (%v, %d)", i, s.at, ok, retry, s.ok, s.retry)
				}
			}
			st := l.Stats()
			var allowed uint64
			for _, s := range tt.steps {
				if s.ok {
					allowed++
				}
			}
			if st.Allowed != allowed || st.Limited != uint64(len(tt.steps))-allowed || st.Entries != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestLimiterKeysIndependent checks that one key's use does not limit
// another.
func TestLimiterKeysIndependent(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Minute, 0)
	if ok, _ := l.Allow([]byte("a")); !ok {
		t.Fatal("a refused")
	}
	if ok, _ := l.Allow([]byte("a")); ok {
		t.Fatal("a allowed twice")
	}
	if ok, _ := l.Allow([]byte("b")); !ok {
		t.Fatal("b refused")
	}
}

// TestLimiterFlood sends a million distinct keys through a small zone
// while one client keeps to its limit: the zone stays its size, the
// client is never refused wrongly, and the flood is evicted, not kept.
func TestLimiterFlood(t *testing.T) {
	l := newTestLimiter(t, 64<<10, 10*time.Millisecond, 0)
	client := l.z.hash([]byte("client"))
	now := uint64(1)
	var key [8]byte
	for i := range 1_000_000 {
		now += 1 // a key a microsecond: 1e6 keys a second
		for j := range key {
			key[j] = byte(i >> (8 * j))
		}
		l.allowAt(l.z.hash(key[:]), now)
		if i%20_000 == 0 { // every 20 ms: twice the client's rate
			if ok, _ := l.allowAt(client, now); !ok {
				t.Fatalf("client refused at %dµs after %d flood keys", now, i)
			}
		}
	}
	st := l.Stats()
	if st.Entries > st.Capacity || st.Capacity != uint64((64<<10-headerSize)/limiterBucketBytes*limiterWays) {
		t.Fatalf("stats %+v", st)
	}
	if st.Evictions == 0 {
		t.Fatalf("no evictions: %+v", st)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestLimiterEvictsLapsedFirst fills one bucket and checks that a new key
// takes the slot of the entry that lapses first.
func TestLimiterEvictsLapsedFirst(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Second, 0)
	// Find limiterWays+1 keys of bucket 0.
	var keys []uint64
	for i := 0; len(keys) < limiterWays+1; i++ {
		h := l.z.hash([]byte(strconv.Itoa(i)))
		if b := l.bucket(h); &b[0] == &l.slots[0] {
			keys = append(keys, h)
		}
	}
	for i, h := range keys[:limiterWays] {
		l.allowAt(h, uint64(1000+i)) // keys[0] lapses first
	}
	l.allowAt(keys[limiterWays], 2000)
	if find(l.bucket(keys[0]), keys[0]) != nil {
		t.Fatal("the oldest key was kept")
	}
	for _, h := range keys[1:] {
		if find(l.bucket(h), h) == nil {
			t.Fatalf("key %#x was evicted", h)
		}
	}
	if st := l.Stats(); st.Evictions != 1 || st.Entries != limiterWays {
		t.Fatalf("stats %+v", st)
	}
}

// TestLimiterConcurrent has goroutines share one key: exactly burst+1
// requests pass at one instant, whatever the interleaving.
func TestLimiterConcurrent(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Hour, 99)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				if ok, _ := l.Allow([]byte("shared")); ok {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("allowed %d, want 100", allowed)
	}
}

// TestLimiterAllocs demands that a check allocates nothing.
func TestLimiterAllocs(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Millisecond, 10)
	key := []byte("203.0.113.7")
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// TestOpenLimiter maps a zone a second time, as a worker does, and sees
// the same state; a file of another kind is refused.
func TestOpenLimiter(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Hour, 0)
	l.Allow([]byte("k"))
	f, err := dupFile(l.File())
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenLimiter(f)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if ok, _ := o.Allow([]byte("k")); ok {
		t.Fatal("second mapping does not share the state")
	}
	if o.Fingerprint() != l.Fingerprint() {
		t.Fatal("fingerprint differs")
	}
	if st := l.Stats(); st.Allowed != 1 || st.Limited != 1 {
		t.Fatalf("stats %+v", st)
	}
	s, err := NewStore(Spec{Name: "s", Size: MinSize})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f2, _ := dupFile(s.File())
	if _, err := OpenLimiter(f2); err == nil {
		t.Fatal("a store opened as a limiter")
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

const helperEnv = "FORKD_ZONE_HELPER"

// TestMain runs the helper children of the crash tests: they hammer the
// zone inherited as fd 3.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "limiter":
		hammerLimiter()
	case "store":
		hammerStore()
	}
	os.Exit(m.Run())
}

// hammerLimiter checks random keys of a small set forever, writing one
// line once it is under way.
func hammerLimiter() {
	l, err := OpenLimiter(os.NewFile(3, "zone"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var key [8]byte
	for i := 0; ; i++ {
		n := rand.IntN(5000)
		for j := range key {
			key[j] = byte(n >> (8 * j))
		}
		l.Allow(key[:])
		if i == 1000 {
			fmt.Println("running")
		}
	}
}

// crashLoop starts helpers of kind on f, three at a time, and SIGKILLs
// them once they run, rounds times.
func crashLoop(t *testing.T, kind string, f *os.File, rounds int) {
	t.Helper()
	for r := range rounds {
		var cmds []*exec.Cmd
		for range 3 {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+kind)
			cmd.ExtraFiles = []*os.File{f}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "running\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: helper said %q: %v", r, line, err)
			}
			cmds = append(cmds, cmd)
		}
		for _, cmd := range cmds {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
}

// TestLimiterSurvivesSIGKILL kills processes that hammer one zone, at
// whatever instruction they are, many times over; then every slot must
// hold to the invariants and the zone must still count exactly.
func TestLimiterSurvivesSIGKILL(t *testing.T) {
	l := newTestLimiter(t, MinSize, time.Hour, 4) // 768 slots for 5000 keys: constant eviction
	crashLoop(t, "limiter", l.File(), 15)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Allowed == 0 || st.Evictions == 0 {
		t.Fatalf("the helpers did not work the zone: %+v", st)
	}
	allowed := 0
	for range 10 {
		if ok, _ := l.Allow([]byte("after the crashes")); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a fresh key was allowed %d times, want burst+1 = 5", allowed)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := newTestLimiter(b, 1<<20, time.Microsecond, 1<<20)
	key := []byte("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(key)
	}
}

func BenchmarkSipHash(b *testing.B) {
	key := []byte("203.0.113.9")
	for b.Loop() {
		sipHash(1, 2, key)
	}
}

// BenchmarkLimiterAllowParallel checks one key from every CPU at once:
// the worst case, every check contending for one state word.
func BenchmarkLimiterAllowParallel(b *testing.B) {
	l := newTestLimiter(b, 1<<20, time.Nanosecond*1000, 1<<20)
	key := []byte("203.0.113.9")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(key)
		}
	})
}

// BenchmarkLimiterFlood checks a new key each time in a zone that is
// full: the eviction path, which must cost what a known key does.
func BenchmarkLimiterFlood(b *testing.B) {
	l := newTestLimiter(b, 1<<20, time.Second, 0)
	var key [8]byte
	fill := func(i int) {
		for j := range key {
			key[j] = byte(i >> (8 * j))
		}
	}
	for i := range 2 * len(l.slots) {
		fill(i)
		l.Allow(key[:])
	}
	b.ReportAllocs()
	i := 2 * len(l.slots)
	for b.Loop() {
		fill(i)
		l.Allow(key[:])
		i++
	}
	if st := l.Stats(); st.Entries > st.Capacity {
		b.Fatalf("stats %+v", st)
	}
}
