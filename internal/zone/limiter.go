package zone

import (
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Limiter is a rate_limit block's zone: the generic cell rate algorithm
// (GCRA) over a set-associative table of keys.
//
// # Algorithm
//
// Each key has a theoretical arrival time (TAT). A request at time now is
// allowed when now >= TAT - Tau, and then moves TAT to max(TAT, now) +
// Interval; a refused request changes nothing and may retry after
// TAT - Tau - now. With Interval = 1/rate and Tau = burst × Interval this
// is nginx's limit_req with burst=N nodelay: at most burst+1 requests at
// once, then one per Interval. Times are microseconds since the zone's
// epoch (CLOCK_MONOTONIC), in 48 bits: a zone serves for 8.9 years.
//
// # Table
//
// The table is an array of buckets of limiterWays slots; a key's 64-bit
// keyed hash picks its bucket (the high bits, by multiplication) and is
// stored in the slot, so a check reads one bucket (two cache lines) and
// costs the same whatever the number of keys. Keys are not stored: two
// keys share a state only when their hashes are equal, about once in
// 2^64 pairs, about 3e-8 for a table full of 1e6 keys against each new
// key. A new key takes an empty slot of its bucket, else the slot whose
// TAT is smallest: the entry that lapses first, which for a bucket of
// keys with one rate is the least recently allowed key (an approximate
// LRU, per bucket). Replacing a slot whose TAT is past loses nothing
// (such a key is as good as new); replacing one whose TAT is ahead is an
// eviction, and counted. So a flood of new keys cannot grow the zone, and
// costs each other key at worst its own eviction.
//
// # Slots and crash safety
//
// A slot is two words: the key's hash (0: empty), and the state: a 16-bit
// tag from the hash's low bits and the 48-bit TAT. Each is changed by one
// compare-and-swap, never under a lock. A check finds its key's slot,
// then updates the state by CAS; a state whose tag is not the key's was
// left by the slot's previous key and reads as TAT 0, a fresh key. A new
// key claims a slot by CAS on the key word, then resets the state it read
// beforehand by CAS (which fails, harmlessly, if anyone changed it since).
// So whatever instruction a process dies at, every slot holds either a
// key with its own state, or a key with a foreign state that reads as
// fresh: no state is ever invalid, nothing needs repair, and the worst a
// death or a race costs is one key that starts afresh. (The tag tells two
// keys of a slot apart but for one pair in 65536: then the new key takes
// over the old one's TAT, which errs by at most one burst, once.) Check
// verifies these invariants.
type Limiter struct {
	z        *zone
	slots    []limiterSlot
	buckets  uint64
	interval uint64 // microseconds
	tau      uint64 // microseconds
}

const (
	limiterWays        = 8
	limiterSlotBytes   = 16
	limiterBucketBytes = limiterWays * limiterSlotBytes
	tatBits            = 48
	tatMask            = 1<<tatBits - 1
)

type limiterSlot struct {
	key   atomic.Uint64
	state atomic.Uint64
}

// NewLimiter creates the zone for s (s.Kind is set to KindLimiter).
func NewLimiter(s Spec) (*Limiter, error) {
	s.Kind = KindLimiter
	if s.Interval < time.Microsecond {
		return nil, fmt.Errorf("zone %s: interval %v is under a microsecond", s.Name, s.Interval)
	}
	z, err := create(s)
	if err != nil {
		return nil, err
	}
	return newLimiter(z), nil
}

// OpenLimiter maps a limiter zone inherited as f; it takes ownership of f.
func OpenLimiter(f *os.File) (*Limiter, error) {
	z, err := open(f, KindLimiter)
	if err != nil {
		return nil, err
	}
	return newLimiter(z), nil
}

func newLimiter(z *zone) *Limiter {
	n := z.buckets()
	return &Limiter{
		z:        z,
		slots:    unsafe.Slice((*limiterSlot)(unsafe.Pointer(&z.mem[headerSize])), n*limiterWays),
		buckets:  n,
		interval: z.word(offInterval).Load(),
		tau:      z.word(offTau).Load(),
	}
}

// File is the zone's memory file, to pass to other processes.
func (l *Limiter) File() *os.File { return l.z.file }

// Fingerprint is the fingerprint of the Spec the zone was made from.
func (l *Limiter) Fingerprint() uint64 { return l.z.fingerprint() }

// Stats sums the zone's counters over every process; Capacity is the
// number of slots.
func (l *Limiter) Stats() Stats {
	s := l.z.stats()
	s.Capacity = uint64(len(l.slots))
	return s
}

// Close unmaps the zone and closes this process's file.
func (l *Limiter) Close() error { return l.z.close() }

// Allow checks one request of key, counts it and reports whether it may
// pass; when not, retry is how long until one would. It does not
// allocate.
func (l *Limiter) Allow(key []byte) (ok bool, retry time.Duration) {
	ok, wait := l.allowAt(l.z.hash(key), l.z.nowUS())
	return ok, time.Duration(wait) * time.Microsecond
}

// bucket returns the slots of h's bucket.
func (l *Limiter) bucket(h uint64) []limiterSlot {
	hi, _ := bits.Mul64(h, l.buckets)
	return l.slots[hi*limiterWays : hi*limiterWays+limiterWays]
}

// tag is the part of h a state word carries.
func tag(h uint64) uint64 { return h & 0xffff }

// tatOf reads a state word for the key whose hash is h: its TAT, or 0
// when the state is another key's.
func tatOf(state, h uint64) uint64 {
	if state>>tatBits != tag(h) {
		return 0
	}
	return state & tatMask
}

// allowAt is Allow for the key whose hash is h at time now.
func (l *Limiter) allowAt(h, now uint64) (bool, uint64) {
	b := l.bucket(h)
	var s *limiterSlot
	for try := 0; s == nil; try++ {
		if s = find(b, h); s == nil && l.claim(b, h, now) != nil {
			// Another process may have claimed a slot for h at the same
			// moment: all use the first slot that holds h, and the
			// other lapses unused.
			s = find(b, h)
		}
		if try == 8 && s == nil {
			// Lost eight claims in a row to other processes: rather
			// than spin, let this one request through.
			l.z.st.allowed.Add(1)
			return true, 0
		}
	}
	for {
		old := s.state.Load()
		tat := max(tatOf(old, h), now)
		if tat-now > l.tau {
			l.z.st.limited.Add(1)
			return false, tat - l.tau - now
		}
		next := min(tat+l.interval, tatMask)
		if s.state.CompareAndSwap(old, tag(h)<<tatBits|next) {
			l.z.st.allowed.Add(1)
			return true, 0
		}
	}
}

// find returns h's slot in bucket b, or nil.
func find(b []limiterSlot, h uint64) *limiterSlot {
	for i := range b {
		if b[i].key.Load() == h {
			return &b[i]
		}
	}
	return nil
}

// claim gives h a slot of bucket b: an empty one, else the one whose TAT
// is smallest. It returns nil if another process changed that slot first.
func (l *Limiter) claim(b []limiterSlot, h, now uint64) *limiterSlot {
	victim, vkey, vstate := -1, uint64(0), uint64(0)
	for i := range b {
		k := b[i].key.Load()
		st := b[i].state.Load()
		if k == 0 {
			victim, vkey, vstate = i, 0, st
			break
		}
		if victim < 0 || st&tatMask < vstate&tatMask {
			victim, vkey, vstate = i, k, st
		}
	}
	s := &b[victim]
	if !s.key.CompareAndSwap(vkey, h) {
		return nil
	}
	switch {
	case vkey == 0:
		l.z.st.entries.Add(1)
	case tatOf(vstate, vkey) > now:
		l.z.st.evictions.Add(1)
	}
	s.state.CompareAndSwap(vstate, tag(h)<<tatBits)
	return s
}

// Check verifies every slot of the table against the invariants the
// crash-safety argument rests on (see Limiter): each key sits in its own
// bucket, and no state's TAT is further ahead than one request can put
// it. It reads the table while others may write it.
func (l *Limiter) Check() error {
	now := l.z.nowUS()
	for i := range l.slots {
		s := &l.slots[i]
		k, st := s.key.Load(), s.state.Load()
		if k == 0 {
			continue
		}
		hi, _ := bits.Mul64(k, l.buckets)
		if hi != uint64(i/limiterWays) {
			return fmt.Errorf("slot %d: key %#x belongs to bucket %d", i, k, hi)
		}
		if tat := st & tatMask; tat > now+l.tau+l.interval+1_000_000 {
			return fmt.Errorf("slot %d: TAT %d is %dµs ahead of now", i, tat, tat-now)
		}
	}
	return nil
}
