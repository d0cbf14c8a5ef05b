package authn

import "hash/maphash"

// CachedSubject answers from the cache alone: ok false means the token is
// not cached (or its entry expired) and Subject must verify it, which may
// fetch the key set. The event-loop transport calls it on the loop and
// hands the request to a goroutine only when it says false. A missing
// token is decided here too (ErrNoToken).
func (c *Cache) CachedSubject(token []byte) (subject string, ok bool, err error) {
	if len(token) == 0 {
		return "", true, ErrNoToken
	}
	_, e, found := c.lookup(token)
	if found && c.now().Before(e.until) {
		return e.subject, true, nil
	}
	return "", false, nil
}

// lookup finds token's shard and entry.
func (c *Cache) lookup(token []byte) (*shard, entry, bool) {
	s := &c.shards[maphash.Bytes(c.seed, token)%uint64(len(c.shards))]
	s.mu.RLock()
	e, ok := s.m[string(token)] // no allocation: the compiler special-cases this lookup
	s.mu.RUnlock()
	return s, e, ok
}
