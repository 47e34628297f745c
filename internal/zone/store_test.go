package zone

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func newTestStore(t testing.TB, size int64) *Store {
	t.Helper()
	s, err := NewStore(Spec{Name: "test", Size: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStoreGetSetDelete(t *testing.T) {
	s := newTestStore(t, MinSize)
	if _, ok := s.Get(nil, []byte("k")); ok {
		t.Fatal("empty store has k")
	}
	if err := s.Set([]byte("k"), []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get(nil, []byte("k")); !ok || string(v) != "value" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
	big := bytes.Repeat([]byte("x"), MaxValue)
	if err := s.Set([]byte("k"), big, 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(nil, []byte("k")); !bytes.Equal(v, big) {
		t.Fatalf("Get = %d bytes", len(v))
	}
	if err := s.Set([]byte("k"), append(big, 'x'), 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	if err := s.Set(bytes.Repeat([]byte("k"), MaxKey+1), nil, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized key: %v", err)
	}
	if !s.Delete([]byte("k")) || s.Delete([]byte("k")) {
		t.Fatal("Delete")
	}
	if _, ok := s.Get(nil, []byte("k")); ok {
		t.Fatal("deleted key found")
	}
}

func TestStoreTTL(t *testing.T) {
	s := newTestStore(t, MinSize)
	if err := s.Set([]byte("k"), []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := s.Get(nil, []byte("k")); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key did not expire")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStoreAdd(t *testing.T) {
	s := newTestStore(t, MinSize)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if _, err := s.Add([]byte("hits"), 1, 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, ok := s.Counter([]byte("hits")); !ok || n != 8000 {
		t.Fatalf("counter = %d, %v", n, ok)
	}
	s.Set([]byte("str"), []byte("x"), 0)
	if _, err := s.Add([]byte("str"), 1, 0); !errors.Is(err, ErrNotCounter) {
		t.Fatalf("Add on a string: %v", err)
	}
}

// TestStoreEviction fills a small store far past its slots: it keeps its
// size and evicts, and recent keys are still there.
func TestStoreEviction(t *testing.T) {
	s := newTestStore(t, MinSize)
	for i := range 10 * len(s.slots) {
		if err := s.Set([]byte(strconv.Itoa(i)), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Entries > st.Capacity || st.Evictions == 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestStoreAllocs(t *testing.T) {
	s := newTestStore(t, MinSize)
	s.Set([]byte("k"), []byte("value"), 0)
	buf := make([]byte, 0, MaxValue)
	key := []byte("k")
	if n := testing.AllocsPerRun(1000, func() {
		s.Get(buf[:0], key)
		s.Add([]byte("c"), 1, 0)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// storeValue is what the helpers write under key i: a value whose bytes
// all derive from i and from its length, so a torn one shows.
func storeValue(i, n int) []byte {
	return bytes.Repeat([]byte{byte(i), byte(n)}, n/2)
}

func hammerStore() {
	s, err := OpenStore(os.NewFile(3, "zone"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for j := 0; ; j++ {
		i := rand.IntN(2000)
		key := []byte(strconv.Itoa(i))
		switch j % 4 {
		case 0, 1:
			s.Set(key, storeValue(i, 2*(1+rand.IntN(MaxValue/2))), 0)
		case 2:
			s.Get(nil, key)
		case 3:
			s.Delete(key)
		}
		if j == 1000 {
			fmt.Println("running")
		}
	}
}

// TestStoreSurvivesSIGKILL kills writers in a loop; afterwards no value
// read is torn, and every key can be written and read again.
func TestStoreSurvivesSIGKILL(t *testing.T) {
	s := newTestStore(t, 256<<10)
	crashLoop(t, "store", s.File(), 15)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		key := []byte(strconv.Itoa(i))
		if v, ok := s.Get(nil, key); ok {
			if len(v) == 0 || !bytes.Equal(v, storeValue(i, len(v))) {
				t.Fatalf("key %d: torn value %v", i, v)
			}
		}
		if err := s.Set(key, []byte("after"), 0); err != nil {
			t.Fatal(err)
		}
		if v, ok := s.Get(nil, key); !ok || string(v) != "after" {
			t.Fatalf("key %d: %q %v after Set", i, v, ok)
		}
	}
}

// TestStoreEntries: the entries count follows sets and deletes.
func TestStoreEntries(t *testing.T) {
	s := newTestStore(t, MinSize)
	for i := range 10 {
		s.Set([]byte(strconv.Itoa(i)), []byte("v"), 0)
	}
	for i := range 4 {
		s.Delete([]byte(strconv.Itoa(i)))
	}
	s.Set([]byte("1"), []byte("again"), 0)
	if st := s.Stats(); st.Entries != 7 {
		t.Fatalf("entries %d, want 7", st.Entries)
	}
}

// TestStoreRelease: the master's Release frees a lock whose holder's pid
// now names a live process (a reused pid, which a writer's own recovery
// cannot tell from its holder: here pid 1), empties the slot it left torn,
// and reads no page of the table that nobody touched.
func TestStoreRelease(t *testing.T) {
	s := newTestStore(t, 1<<20)
	if err := s.Set([]byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	b := s.bucket(s.z.hash([]byte("k")))
	sl := lookup(b, []byte("k"), s.z.hash([]byte("k")), s.z.nowUS())
	if sl == nil {
		t.Fatal("k not in its bucket")
	}
	// A writer (pid 1) died mid-write: bucket locked, slot odd.
	b[0].lock.Store(1)
	sl.seq.Add(1)
	if n := s.Release(12345678); n != 0 {
		t.Fatalf("Release of a pid that holds nothing freed %d locks", n)
	}
	if n := s.Release(1); n != 1 {
		t.Fatalf("Release freed %d locks, want 1", n)
	}
	if b[0].lock.Load() != 0 || sl.seq.Load()&1 != 0 {
		t.Fatalf("after Release: lock %d, seq %d", b[0].lock.Load(), sl.seq.Load())
	}
	if _, ok := s.Get(nil, []byte("k")); ok {
		t.Error("the torn slot is still read")
	}
	if st := s.Stats(); st.Entries != 0 {
		t.Errorf("entries %d after the torn slot went, want 0", st.Entries)
	}
	if err := s.Set([]byte("k"), []byte("again"), 0); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get(nil, []byte("k")); !ok || string(v) != "again" {
		t.Errorf("after Release: %q %v", v, ok)
	}

	// A large store nobody wrote: Release touches none of its pages.
	big := newTestStore(t, 64<<20)
	before := resident(t, big.z.mem)
	big.Release(1)
	if after := resident(t, big.z.mem); after != before {
		t.Errorf("Release made %d pages resident (from %d)", after-before, before)
	}
}

// resident counts the resident pages of mem (mincore).
func resident(t *testing.T, mem []byte) int {
	t.Helper()
	page := os.Getpagesize()
	vec := make([]byte, (len(mem)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
