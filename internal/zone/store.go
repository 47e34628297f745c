package zone

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Store is the shared block's zone: a key-value store of fixed-size slots
// that every worker reads and writes, with expiry and atomic counters.
//
// # Table
//
// Like Limiter's, a set-associative table: a key's keyed hash picks a
// bucket of storeWays slots of storeSlotBytes each. A key holds at most
// MaxKey bytes and a value MaxValue. A new key takes an empty or expired
// slot of its bucket, else the least recently used one (read or written
// last), which counts as an eviction. Keys are compared in full, so two
// keys never share a value.
//
// # Slot words
//
//	0      the bucket's lock, in its first slot only: 0, or the pid of
//	       the process that writes the bucket
//	8      sequence: even when stable, odd while the slot is written
//	16     the key's hash; 0: empty
//	24     expiry, microseconds since the epoch; 0: none
//	32     last use, microseconds since the epoch
//	40     key length | value length << 16 | counter flag << 32
//	48     the key (64 bytes), then the value (400 bytes)
//
// # Crash safety
//
// Writers take the bucket's lock (a compare-and-swap of 0 to their pid),
// make the slot's sequence odd, write, make it even again and unlock;
// readers take no lock: they read the sequence, the slot, the sequence
// again, and retry when it moved or was odd. A process that finds the
// lock held for long checks whether its holder still exists (kill(pid,
// 0)); when not, it takes the lock over and empties every slot of the
// bucket whose sequence is odd, whose contents may be torn. A reader that
// finds a slot odd and its writer gone reads it as absent. So a death at
// any instruction leaves at worst one key lost, never a torn value read
// or a bucket locked for good. Pids are reused only after the kernel has
// gone round its pid space, which a lock held for microseconds does not
// outlive in practice.
type Store struct {
	z       *zone
	slots   []storeSlot
	buckets uint64
	pid     uint64
}

// The sizes of a store's slots.
const (
	MaxKey           = 64
	MaxValue         = 400
	storeWays        = 8
	storeSlotBytes   = 512
	storeBucketBytes = storeWays * storeSlotBytes
	keyWords         = MaxKey / 8
	valueWords       = MaxValue / 8
	counterFlag      = 1 << 32
	spinsBeforeCheck = 64
	maxWaits         = 10000
)

type storeSlot struct {
	lock    atomic.Uint64
	seq     atomic.Uint64
	hash    atomic.Uint64
	expires atomic.Uint64
	used    atomic.Uint64
	lens    atomic.Uint64
	key     [keyWords]atomic.Uint64
	value   [valueWords]atomic.Uint64
}

// Errors of the store.
var (
	ErrTooLarge   = errors.New("key or value too large for the shared store")
	ErrNotCounter = errors.New("value is not a counter")
)

// NewStore creates the zone for s (s.Kind is set to KindStore).
func NewStore(s Spec) (*Store, error) {
	s.Kind = KindStore
	z, err := create(s)
	if err != nil {
		return nil, err
	}
	return newStore(z), nil
}

// OpenStore maps a store zone inherited as f; it takes ownership of f.
func OpenStore(f *os.File) (*Store, error) {
	z, err := open(f, KindStore)
	if err != nil {
		return nil, err
	}
	return newStore(z), nil
}

func newStore(z *zone) *Store {
	n := z.buckets()
	return &Store{
		z:       z,
		slots:   unsafe.Slice((*storeSlot)(unsafe.Pointer(&z.mem[headerSize])), n*storeWays),
		buckets: n,
		pid:     uint64(os.Getpid()),
	}
}

// File is the zone's memory file, to pass to other processes.
func (s *Store) File() *os.File { return s.z.file }

// Fingerprint is the fingerprint of the Spec the zone was made from.
func (s *Store) Fingerprint() uint64 { return s.z.fingerprint() }

// Close unmaps the zone and closes this process's file.
func (s *Store) Close() error { return s.z.close() }

// Stats sums the zone's counters: Allowed and Limited count the hits and
// misses of Get.
func (s *Store) Stats() Stats {
	st := s.z.stats()
	st.Capacity = uint64(len(s.slots))
	return st
}

func (s *Store) bucket(h uint64) []storeSlot {
	hi, _ := bits.Mul64(h, s.buckets)
	return s.slots[hi*storeWays : hi*storeWays+storeWays]
}

// Get appends key's value to dst; ok is false when the key is absent or
// expired.
func (s *Store) Get(dst, key []byte) (_ []byte, ok bool) {
	if len(key) > MaxKey {
		return dst, false
	}
	h := s.z.hash(key)
	now := s.z.nowUS()
	b := s.bucket(h)
	for i := range b {
		sl := &b[i]
		if sl.hash.Load() != h {
			continue
		}
		out, found := s.read(sl, dst, key, h, now)
		if found {
			sl.used.Store(now)
			s.z.st.allowed.Add(1)
			return out, true
		}
	}
	s.z.st.limited.Add(1)
	return dst, false
}

// read copies sl's value after dst when sl holds key and has not expired,
// by the sequence protocol.
func (s *Store) read(sl *storeSlot, dst, key []byte, h, now uint64) ([]byte, bool) {
	for waits := 0; waits < maxWaits; waits++ {
		seq := sl.seq.Load()
		if seq&1 == 1 {
			if waits > spinsBeforeCheck && !s.holderAlive(sl) {
				return dst, false
			}
			runtime.Gosched()
			continue
		}
		lens := sl.lens.Load()
		exp := sl.expires.Load()
		match := sl.hash.Load() == h && keyEqual(sl, key, int(lens&0xffff))
		out := dst
		if match {
			out = appendWords(dst, sl.value[:], int(lens>>16&0xffff))
		}
		if sl.seq.Load() != seq {
			continue
		}
		if !match || exp != 0 && exp <= now {
			return dst, false
		}
		return out, true
	}
	return dst, false
}

// holderAlive tells whether the process holding the lock of sl's bucket
// still exists.
func (s *Store) holderAlive(sl *storeSlot) bool {
	first := s.firstOfBucket(sl)
	pid := first.lock.Load()
	return pid != 0 && processAlive(pid)
}

// firstOfBucket returns the first slot of sl's bucket, which holds its
// lock.
func (s *Store) firstOfBucket(sl *storeSlot) *storeSlot {
	i := (uintptr(unsafe.Pointer(sl)) - uintptr(unsafe.Pointer(&s.slots[0]))) / storeSlotBytes
	return &s.slots[i-i%storeWays]
}

// processAlive tells whether pid names a process (of any user).
func processAlive(pid uint64) bool {
	return unix.Kill(int(pid), 0) != unix.ESRCH
}

func keyEqual(sl *storeSlot, key []byte, n int) bool {
	if n != len(key) {
		return false
	}
	var w [8]byte
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(w[:], sl.key[i/8].Load())
		m := min(8, n-i)
		if string(w[:m]) != string(key[i:i+m]) {
			return false
		}
	}
	return true
}

func appendWords(dst []byte, words []atomic.Uint64, n int) []byte {
	n = min(n, len(words)*8)
	var w [8]byte
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(w[:], words[i/8].Load())
		dst = append(dst, w[:min(8, n-i)]...)
	}
	return dst
}

func storeWords(words []atomic.Uint64, b []byte) {
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		clear(w[:])
		copy(w[:], b[i:])
		words[i/8].Store(binary.LittleEndian.Uint64(w[:]))
	}
}

// lockBucket takes the lock of bucket b, taking it over from a holder
// that no longer exists and emptying the slots it left torn.
func (s *Store) lockBucket(b []storeSlot) {
	l := &b[0].lock
	for i := 0; ; i++ {
		if l.CompareAndSwap(0, s.pid) {
			return
		}
		if i >= spinsBeforeCheck && i%spinsBeforeCheck == 0 {
			if pid := l.Load(); pid != 0 && pid != s.pid && !processAlive(pid) && l.CompareAndSwap(pid, s.pid) {
				s.clearTorn(b)
				return
			}
		}
		runtime.Gosched()
	}
}

func unlockBucket(b []storeSlot) { b[0].lock.Store(0) }

// clearTorn empties the slots of b, whose lock the caller took over from a
// writer that died, that the writer left half-written (odd sequence).
func (s *Store) clearTorn(b []storeSlot) {
	for j := range b {
		if seq := b[j].seq.Load(); seq&1 == 1 {
			b[j].hash.Store(0)
			b[j].seq.Store(seq + 1)
			s.z.st.entries.Add(^uint64(0)) // counted when its writer took it
		}
	}
}

// HoldForTest leaves key's bucket locked by pid, as a writer SIGKILLed
// mid-write would; it exists for the tests of the packages that use the
// store (the master's release of a reaped worker's locks).
func (s *Store) HoldForTest(key []byte, pid int) {
	s.bucket(s.z.hash(key))[0].lock.Store(uint64(pid))
}

// Release frees every bucket lock that pid holds, emptying the slots it
// left half-written, and returns how many it freed. The master calls it
// for each worker it reaps: a writer's own recovery (lockBucket) trusts
// kill(pid, 0), which a pid reused by a new process would fool, and the
// master runs before the kernel can hand the pid out again. Only pages of
// the table that some process touched are read (mincore), so the caller's
// resident memory does not grow with the zone.
func (s *Store) Release(pid int) int {
	if pid <= 0 || len(s.slots) == 0 {
		return 0
	}
	page := uintptr(os.Getpagesize())
	base := uintptr(unsafe.Pointer(&s.z.mem[0]))
	vec := make([]byte, (uintptr(len(s.z.mem))+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, base, uintptr(len(s.z.mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		vec = nil // read every bucket
	}
	n := 0
	for i := uint64(0); i < s.buckets; i++ {
		b := s.slots[i*storeWays : (i+1)*storeWays]
		if vec != nil && vec[(uintptr(unsafe.Pointer(&b[0]))-base)/page]&1 == 0 {
			continue // never touched: unlocked
		}
		if b[0].lock.CompareAndSwap(uint64(pid), s.pid) {
			s.clearTorn(b)
			unlockBucket(b)
			n++
		}
	}
	return n
}

// lookup finds key's slot in b, whose lock the caller holds; nil when
// absent or expired.
func lookup(b []storeSlot, key []byte, h, now uint64) *storeSlot {
	for i := range b {
		sl := &b[i]
		if sl.hash.Load() != h {
			continue
		}
		lens := sl.lens.Load()
		if !keyEqual(sl, key, int(lens&0xffff)) {
			continue
		}
		if exp := sl.expires.Load(); exp != 0 && exp <= now {
			return nil
		}
		return sl
	}
	return nil
}

// victim picks the slot of b a new key takes: an empty one, else an
// expired one, else the least recently used; evicted tells whether a live
// entry goes.
func (s *Store) victim(b []storeSlot, now uint64) (sl *storeSlot, evicted bool) {
	for i := range b {
		if b[i].hash.Load() == 0 {
			s.z.st.entries.Add(1)
			return &b[i], false
		}
	}
	for i := range b {
		if exp := b[i].expires.Load(); exp != 0 && exp <= now {
			return &b[i], false
		}
	}
	v := &b[0]
	for i := range b {
		if b[i].used.Load() < v.used.Load() {
			v = &b[i]
		}
	}
	s.z.st.evictions.Add(1)
	return v, true
}

// write replaces sl's contents, under the bucket lock.
func write(sl *storeSlot, h uint64, key, value []byte, lens, expires, now uint64) {
	seq := sl.seq.Load() | 1
	sl.seq.Store(seq)
	sl.hash.Store(h)
	sl.expires.Store(expires)
	sl.used.Store(now)
	sl.lens.Store(lens)
	storeWords(sl.key[:], key)
	storeWords(sl.value[:], value)
	sl.seq.Store(seq + 1)
}

// expiry is the expiry word for a ttl from now; 0 for none.
func expiry(now uint64, ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	return now + max(1, uint64(ttl/time.Microsecond))
}

// lockedLookup locks key's bucket b and finds key's slot in it (nil when
// absent or expired); the caller unlocks b.
func (s *Store) lockedLookup(key []byte) (b []storeSlot, sl *storeSlot, h, now uint64) {
	h = s.z.hash(key)
	now = s.z.nowUS()
	b = s.bucket(h)
	s.lockBucket(b)
	return b, lookup(b, key, h, now), h, now
}

// Set stores value under key; ttl > 0 makes it expire then.
func (s *Store) Set(key, value []byte, ttl time.Duration) error {
	if len(key) > MaxKey || len(value) > MaxValue {
		return ErrTooLarge
	}
	b, sl, h, now := s.lockedLookup(key)
	defer unlockBucket(b)
	if sl == nil {
		sl, _ = s.victim(b, now)
	}
	write(sl, h, key, value, uint64(len(key))|uint64(len(value))<<16, expiry(now, ttl), now)
	return nil
}

// Delete removes key; it reports whether it was there.
func (s *Store) Delete(key []byte) bool {
	if len(key) > MaxKey {
		return false
	}
	b, sl, _, _ := s.lockedLookup(key)
	defer unlockBucket(b)
	if sl == nil {
		return false
	}
	seq := sl.seq.Load() | 1
	sl.seq.Store(seq)
	sl.hash.Store(0)
	sl.seq.Store(seq + 1)
	s.z.st.entries.Add(^uint64(0))
	return true
}

// Add adds delta to the counter at key and returns its new value; a key
// that is absent or expired starts at 0, with ttl (ttl <= 0: none). A
// value that Set stored is not a counter (ErrNotCounter).
func (s *Store) Add(key []byte, delta int64, ttl time.Duration) (int64, error) {
	if len(key) > MaxKey {
		return 0, ErrTooLarge
	}
	b, sl, h, now := s.lockedLookup(key)
	defer unlockBucket(b)
	if sl == nil {
		sl, _ = s.victim(b, now)
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], uint64(delta))
		write(sl, h, key, v[:], uint64(len(key))|8<<16|counterFlag, expiry(now, ttl), now)
		return delta, nil
	}
	if sl.lens.Load()&counterFlag == 0 {
		return 0, ErrNotCounter
	}
	// Only the lock holder writes the value word; one atomic store keeps
	// readers consistent without an odd sequence.
	n := int64(sl.value[0].Load()) + delta
	sl.value[0].Store(uint64(n))
	sl.used.Store(now)
	return n, nil
}

// Counter returns the counter at key (see Add).
func (s *Store) Counter(key []byte) (int64, bool) {
	var buf [8]byte
	v, ok := s.Get(buf[:0], key)
	if !ok || len(v) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(v)), true
}

// Check verifies the table's invariants: keys in their buckets, lengths
// within bounds. (A bucket locked by a process that is gone, with a torn
// slot, is a valid state: the next writer recovers it, and readers read
// the slot as absent.)
func (s *Store) Check() error {
	for i := range s.slots {
		sl := &s.slots[i]
		h := sl.hash.Load()
		if h == 0 {
			continue
		}
		hi, _ := bits.Mul64(h, s.buckets)
		if hi != uint64(i/storeWays) {
			return fmt.Errorf("slot %d: key hash %#x belongs to bucket %d", i, h, hi)
		}
		lens := sl.lens.Load()
		if lens&0xffff > MaxKey || lens>>16&0xffff > MaxValue {
			return fmt.Errorf("slot %d: lengths %#x out of bounds", i, lens)
		}
	}
	return nil
}
