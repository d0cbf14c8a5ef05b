// Package readmap gives a mutex-guarded map a copy that lookups read
// without any lock.
//
// Why: a read lock is not free when several cores take it for every
// request. sync.RWMutex.RLock writes its reader count, one cache line that
// every core then moves back and forth (the gateway's two event loops did
// so on each lookup of a rate-limit bucket and of a verified token:
// gateway/README.md, sixth pass). A read of an atomic pointer writes
// nothing.
//
// Why not sync.Map, which works the same way (a read-only map promoted from
// a dirty one after as many misses as it holds): its keys are interfaces,
// so a lookup by a []byte key would copy the bytes into a string every
// time, whereas indexing a Go map with string(b) copies nothing.
package readmap

import (
	"maps"
	"sync/atomic"
)

// Copy is the lock-free copy of a map[string]V its owner guards with a
// mutex of its own. The zero value is an empty copy. Load may be called
// concurrently with anything; Missed and Publish only with the owner's
// mutex held.
//
// The copy can be stale: an entry deleted from the owner's map may still be
// found in it until the next Publish. An owner that deletes either
// publishes at once or checks every entry it finds (expiry, key set) as it
// would one found in its own map.
type Copy[V any] struct {
	ro     atomic.Pointer[map[string]V]
	misses int // lookups the copy did not answer since it was taken
}

// Load returns the copy, which must not be modified.
func (c *Copy[V]) Load() map[string]V {
	if p := c.ro.Load(); p != nil {
		return *p
	}
	return nil
}

// Missed counts a lookup the copy could not answer and, once such lookups
// match the copy's size, replaces it with a clone of m: copying then costs
// O(1) per miss amortised, and a new key is read lock-free after a few
// lookups.
func (c *Copy[V]) Missed(m map[string]V) {
	if c.misses++; c.misses >= len(c.Load()) {
		c.Publish(m)
	}
}

// Publish replaces the copy with a clone of m now.
func (c *Copy[V]) Publish(m map[string]V) {
	ro := maps.Clone(m)
	c.ro.Store(&ro)
	c.misses = 0
}

// Misses is how many lookups missed since the copy was taken.
func (c *Copy[V]) Misses() int { return c.misses }
