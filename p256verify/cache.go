package p256verify

import (
	"sync"
	"sync/atomic"
)

// DefaultMaxKeys is the number of tables a Cache keeps when NewCache is
// given 0.
const DefaultMaxKeys = 32

// admitAfter is the number of uses within one epoch after which a key
// without a table asks for one: a key used once (a one-off caller) never
// costs a table build.
const admitAfter = 2

// epochLen is the number of cold-path verifications per frequency epoch.
// Use counts restart each epoch, so the frequencies compared at admission
// are recent ones.
const epochLen = 1024

// Cache decides which keys get a table and bounds how many have one. Safe
// for concurrent use.
//
// A key's table is built on its second use within an epoch (an epoch is
// epochLen verifications on the cold path), synchronously in the
// verification that asks for it, while other verifications of that key go
// on without it. When the cache is full, the candidate replaces the key
// with the fewest uses in the current epoch only if it has been used at
// least twice as often (hysteresis, so keys of equal rate do not take
// turns rebuilding); the loser's table is dropped (its in-flight
// verifications keep their reference). With all hot keys tabled,
// verifications take no lock.
type Cache struct {
	max  int
	slow atomic.Uint64 // cold-path verifications (epoch = slow / epochLen)

	mu   sync.Mutex
	keys []*Key // keys holding or building a table, at most max
}

// NewCache returns a Cache holding at most maxKeys tables (TableBytes
// each); 0 means DefaultMaxKeys.
func NewCache(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Cache{max: maxKeys}
}

// Verify reports whether sig (r||s, 32 bytes each, big-endian, RFC 7518
// section 3.4) is a valid ECDSA signature by k over digest (a SHA-256
// hash). It gives the same answer as crypto/ecdsa.Verify; whether k has a
// table changes only the speed. A nil Cache verifies without tables.
func (c *Cache) Verify(k *Key, digest *[32]byte, sig *[64]byte) bool {
	if c == nil {
		return k.verify(nil, digest, sig)
	}
	if t := k.tab.Load(); t != nil {
		k.touch(c.slow.Load() / epochLen)
		return k.verify(t, digest, sig)
	}
	ep := c.slow.Add(1) / epochLen
	if k.touch(ep) >= admitAfter && c.admit(k, ep) {
		return k.verify(k.tab.Load(), digest, sig)
	}
	return k.verify(nil, digest, sig)
}

// Prepare counts one use of k and builds its table now if the cache has
// room (or, when full, on the same terms as Verify). It reports whether k
// has a table afterwards. A nil Cache builds nothing (like Verify).
func (c *Cache) Prepare(k *Key) bool {
	if k.tab.Load() != nil || c == nil {
		return k.Tabled()
	}
	ep := c.slow.Load() / epochLen
	k.touch(ep)
	return c.admit(k, ep)
}

// Len returns the number of keys holding or building a table.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}

// touch counts one use of k in epoch ep and returns its uses in ep. Racing
// updates may lose a count at an epoch change; the counts only rank keys.
func (k *Key) touch(ep uint64) uint32 {
	v := k.freq.Load()
	switch {
	case v>>32 != ep:
		k.freq.Store(ep<<32 | 1)
		return 1
	case uint32(v) == 1<<32-1: // saturated: never carry into the epoch
		return uint32(v)
	}
	return uint32(k.freq.Add(1))
}

// uses returns k's uses in epoch ep.
func (k *Key) uses(ep uint64) uint32 {
	v := k.freq.Load()
	if v>>32 != ep {
		return 0
	}
	return uint32(v)
}

// admit gives k a slot (evicting the least used key if full and k is used
// more), builds its table outside the lock and reports whether k has a
// table on return. A key already building reports false: its other
// callers go on with the cold path.
func (c *Cache) admit(k *Key, ep uint64) bool {
	c.mu.Lock()
	if k.tab.Load() != nil {
		c.mu.Unlock()
		return true
	}
	// A key is tabled by one Cache only, the first to admit it: another
	// verifies it with the owner's table when there is one, without
	// otherwise (building and the slot are the owner's).
	if !k.owner.CompareAndSwap(nil, c) && k.owner.Load() != c || k.building {
		c.mu.Unlock()
		return false
	}
	if len(c.keys) < c.max {
		c.keys = append(c.keys, k)
	} else {
		vi := 0
		for i, o := range c.keys {
			if o.uses(ep) < c.keys[vi].uses(ep) {
				vi = i
			}
		}
		v := c.keys[vi]
		if k.uses(ep) < admitAfter || uint64(k.uses(ep)) < 2*uint64(v.uses(ep)) {
			c.mu.Unlock()
			return false
		}
		v.tab.Store(nil)
		c.keys[vi] = k
	}
	k.building = true
	c.mu.Unlock()

	t := newTable(&k.q)

	c.mu.Lock()
	defer c.mu.Unlock()
	k.building = false
	for _, o := range c.keys {
		if o == k { // not evicted while building
			k.tab.Store(t)
			return true
		}
	}
	return false
}
