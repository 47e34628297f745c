// Package zone holds the state that forkd's workers share: shared-memory
// zones that the master creates, sizes and maps before any worker starts,
// and that every worker maps too. A zone is a memory file (memfd), so it
// travels like a listening socket: to workers through exec's ExtraFiles,
// to a new master on USR2. Two kinds exist: a rate-limit table (Limiter,
// one per rate_limit block) and the key-value store of the embedding API
// (Store, the shared block).
//
// # Layout
//
// A zone is one page of header followed by a table of buckets. Every word
// is a little-endian uint64 read and written with sync/atomic only:
//
//	offset  header word
//	0       magic "forkdzn1"; written last at creation, so a zone whose
//	        creator died before finishing is refused by Open
//	8       kind (KindLimiter, KindStore)
//	16, 24  seed of the keyed hash (SipHash-2-4), random per zone
//	32      fingerprint: the hash of the block that made the zone (Spec),
//	        by which a master after HUP or USR2 knows it may keep it
//	40      epoch: CLOCK_MONOTONIC, in nanoseconds, at creation; times in
//	        the table are microseconds since then
//	48      buckets: how many buckets follow the header
//	56      next stripe: each process that opens the zone takes the next
//	        of the statistics stripes below, so that processes count
//	        without sharing cache lines
//	64, 72  the limiter's emission interval and tolerance (microseconds)
//	1024    statsStripes stripes of 64 bytes: allowed, limited, evictions,
//	        entries; a zone's figure is the sum over the stripes
//
// The table is what each kind says (Limiter, Store). The file is sealed
// against growing and shrinking, so no mapping of it can ever fault past
// its end. Pages are only backed once touched: a zone's resident size
// follows its use, up to its size.
//
// # Crash safety
//
// Any process may be SIGKILLed between any two instructions. The limiter
// never locks: each of its updates is a single compare-and-swap of one
// word, and the one state that two words make together (a slot's key and
// the key's state) carries a tag of the key in the state word, so a state
// left behind by another key is recognised and read as a fresh one (see
// Limiter). The store locks one slot at a time; the lock word holds the
// holder's pid, and a process that finds it held by a process that no
// longer exists takes it over and discards the slot, whose sequence
// number tells that its contents may be torn (see Store). The master
// never locks; when it reaps a worker it frees the store locks that pid
// held (Store.Release), before the kernel can give the pid to a process
// that kill(pid, 0) would take for the holder.
package zone

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kind says what a zone holds.
type Kind uint64

// The kinds of zone.
const (
	KindLimiter Kind = 1 // a rate_limit block's table
	KindStore   Kind = 2 // the shared block's key-value store
)

// Header layout (see the package comment).
const (
	headerSize   = 4096
	magic        = 0x316e7a646b726f66 // "forkdzn1" little-endian
	offMagic     = 0
	offKind      = 8
	offSeed0     = 16
	offSeed1     = 24
	offPrint     = 32
	offEpoch     = 40
	offBuckets   = 48
	offStripe    = 56
	offInterval  = 64
	offTau       = 72
	offStripes   = 1024
	stripeSize   = 64
	statsStripes = (headerSize - offStripes) / stripeSize
)

// MinSize is the smallest zone: its header and a few buckets.
const MinSize = 16 << 10

// MaxSize is the largest zone.
const MaxSize = 64 << 30

// ErrNotZone is returned by Open for a file that holds no complete zone of
// the kind asked for.
var ErrNotZone = errors.New("not a forkd zone")

// stripe is one process's statistics counters, on a cache line of its own.
type stripe struct {
	allowed   atomic.Uint64 // limiter: requests let through; store: hits
	limited   atomic.Uint64 // limiter: requests refused; store: misses
	evictions atomic.Uint64 // live entries replaced to make room
	entries   atomic.Uint64 // slots that received their first key
}

// Stats are a zone's counters, summed over every process.
type Stats struct {
	// Entries counts the table's slots that hold a key (a limiter's idle
	// keys included, until their slot is reused).
	Entries uint64
	// Capacity is the number of slots.
	Capacity uint64
	// Evictions counts live entries dropped to make room for a new key.
	Evictions uint64
	// Allowed and Limited count a limiter's checks; for a store they
	// count hits and misses of Get.
	Allowed, Limited uint64
}

// zone is what both kinds share: the mapping and its header.
type zone struct {
	file  *os.File
	mem   []byte
	seed  [2]uint64
	epoch int64
	clk   clock
	st    *stripe
}

// Spec describes a zone to create; the same Spec gives the same
// Fingerprint, which is how a master decides to keep a zone.
type Spec struct {
	Kind Kind
	// Name appears in the memfd's name (/proc/PID/fd) and in errors.
	Name string
	// Size is the whole zone's size in bytes (header included), rounded
	// down to a page.
	Size int64
	// Interval and Tau are a limiter's emission interval (one request per
	// Interval) and tolerance (Burst intervals).
	Interval, Tau time.Duration
	// Key is the limiter's key template, part of the fingerprint only.
	Key string
}

// Fingerprint hashes everything in s that the zone's contents depend on.
func (s Spec) Fingerprint() uint64 {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Kind))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Interval))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Tau))
	b = append(b, s.Name...)
	b = append(b, 0)
	b = append(b, s.Key...)
	return sipHash(0x666f726b64, 0x7a6f6e65, b)
}

// bucketBytes is the size of one bucket of either kind.
func (s Spec) bucketBytes() int64 {
	if s.Kind == KindStore {
		return storeBucketBytes
	}
	return limiterBucketBytes
}

// create makes, sizes, seals and maps a new zone and writes its header.
func create(s Spec) (*zone, error) {
	size := s.Size &^ (headerSize - 1)
	if size < MinSize || size > MaxSize {
		return nil, fmt.Errorf("zone %s: size %d is not between %d and %d", s.Name, s.Size, MinSize, MaxSize)
	}
	fd, err := unix.MemfdCreate("forkd-zone-"+s.Name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("zone %s: memfd: %w", s.Name, err)
	}
	f := os.NewFile(uintptr(fd), "forkd-zone-"+s.Name)
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("zone %s: size: %w", s.Name, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("zone %s: seal: %w", s.Name, err)
	}
	mem, err := mmap(fd, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("zone %s: %w", s.Name, err)
	}
	z := &zone{file: f, mem: mem}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		z.close()
		return nil, fmt.Errorf("zone %s: seed: %w", s.Name, err)
	}
	z.clk = newClock()
	z.word(offKind).Store(uint64(s.Kind))
	z.word(offSeed0).Store(binary.LittleEndian.Uint64(seed[:8]))
	z.word(offSeed1).Store(binary.LittleEndian.Uint64(seed[8:]))
	z.word(offPrint).Store(s.Fingerprint())
	z.word(offEpoch).Store(uint64(z.clk.now()))
	z.word(offBuckets).Store(uint64((size - headerSize) / s.bucketBytes()))
	z.word(offInterval).Store(uint64(s.Interval / time.Microsecond))
	z.word(offTau).Store(uint64(s.Tau / time.Microsecond))
	z.word(offMagic).Store(magic)
	z.load()
	return z, nil
}

// open maps a zone made by create, in this or another process; it takes
// ownership of f.
func open(f *os.File, kind Kind) (*zone, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("zone: %w", err)
	}
	if st.Size < MinSize || st.Size > MaxSize || st.Size%headerSize != 0 {
		f.Close()
		return nil, fmt.Errorf("zone: size %d: %w", st.Size, ErrNotZone)
	}
	mem, err := mmap(int(f.Fd()), st.Size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("zone: %w", err)
	}
	z := &zone{file: f, mem: mem, clk: newClock()}
	bb := Spec{Kind: kind}.bucketBytes()
	if z.word(offMagic).Load() != magic || Kind(z.word(offKind).Load()) != kind ||
		z.word(offBuckets).Load() != uint64((st.Size-headerSize)/bb) {
		z.close()
		return nil, ErrNotZone
	}
	z.load()
	return z, nil
}

// mmap maps size bytes of fd shared, readable and writable.
func mmap(fd int, size int64) ([]byte, error) {
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return mem, nil
}

// load reads the header words a process keeps and takes a stripe.
func (z *zone) load() {
	z.seed = [2]uint64{z.word(offSeed0).Load(), z.word(offSeed1).Load()}
	z.epoch = int64(z.word(offEpoch).Load())
	i := (z.word(offStripe).Add(1) - 1) % statsStripes
	z.st = (*stripe)(unsafe.Pointer(&z.mem[offStripes+i*stripeSize]))
}

// word returns the header or table word at byte offset off.
func (z *zone) word(off uintptr) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&z.mem[off]))
}

// stats sums the stripes.
func (z *zone) stats() Stats {
	var s Stats
	for i := range statsStripes {
		p := (*stripe)(unsafe.Pointer(&z.mem[offStripes+i*stripeSize]))
		s.Allowed += p.allowed.Load()
		s.Limited += p.limited.Load()
		s.Evictions += p.evictions.Load()
		s.Entries += p.entries.Load()
	}
	return s
}

// nowUS is the time in microseconds since the zone's epoch.
func (z *zone) nowUS() uint64 {
	d := z.clk.now() - z.epoch
	if d < 0 {
		return 0
	}
	return uint64(d / 1000)
}

// hash is the zone's keyed hash of key, never 0 (0 marks an empty slot).
func (z *zone) hash(key []byte) uint64 {
	h := sipHash(z.seed[0], z.seed[1], key)
	if h == 0 {
		h = 1
	}
	return h
}

// buckets is the number of buckets in the table.
func (z *zone) buckets() uint64 { return z.word(offBuckets).Load() }

// fingerprint is the Spec.Fingerprint the zone was created with.
func (z *zone) fingerprint() uint64 { return z.word(offPrint).Load() }

// close unmaps the zone and closes its file. Other processes' mappings
// and files keep the memory alive.
func (z *zone) close() error {
	var err error
	if z.mem != nil {
		err = unix.Munmap(z.mem)
		z.mem = nil
	}
	if cerr := z.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// clock reads CLOCK_MONOTONIC, which every process of the machine shares,
// at the cost of Go's own monotonic clock: the offset between the two is
// read once.
type clock struct {
	base  time.Time
	mono0 int64
}

func newClock() clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return clock{base: time.Now(), mono0: ts.Nano()}
}

// now is CLOCK_MONOTONIC in nanoseconds.
func (c clock) now() int64 { return c.mono0 + int64(time.Since(c.base)) }
