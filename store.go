package forkd

import "github.com/forkd/forkd/internal/zone"

// Store is a key-value store that every worker of a master shares, in
// shared memory: what one worker sets, the others read at once, without
// a round trip to the master or an outside server. A configuration's
// shared block creates it (its size bounds it) and a worker finds it in
// Worker.Store (nil without a shared block); it lives as long as the
// master, and passes to the new master on a binary upgrade and through a
// reload that keeps its size.
//
// Get(dst, key) appends key's value to dst; Set(key, value, ttl) stores it
// (ttl > 0: it expires then); Delete(key) removes it; Add(key, delta, ttl)
// adds to a counter atomically across every worker and returns its new
// value, and Counter(key) reads it. Keys hold up to MaxStoreKey bytes,
// values up to MaxStoreValue. When the store is full, a new key replaces
// the least recently used of the 8 keys in its bucket. Get and Add do not
// allocate. Every method is safe for concurrent use by any goroutine of
// any worker, from native handlers, net/http handlers and hooks alike, and
// a worker killed at any moment leaves no entry locked or torn.
type Store = zone.Store

// The limits of a Store's keys and values.
const (
	MaxStoreKey   = zone.MaxKey
	MaxStoreValue = zone.MaxValue
)

// Errors of a Store.
var (
	// ErrStoreTooLarge is returned for a key or value over the limits.
	ErrStoreTooLarge = zone.ErrTooLarge
	// ErrNotCounter is returned by Add for a key whose value Set stored.
	ErrNotCounter = zone.ErrNotCounter
)
