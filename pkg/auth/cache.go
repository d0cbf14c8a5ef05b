package auth

import (
	"crypto/ed25519"
	"hash/maphash"
	"sync"
	"time"
)

// tokenCache remembers tokens that verified, so a client's repeated requests
// with the same access token cost a map lookup instead of a JWT parse and an
// Ed25519 check (about 15% of the order service's CPU under load went to
// verifying the same few tokens again and again).
//
// An entry is used only while it would still verify: before exp (plus the
// verifier's leeway, as the parser allows) and while the verifier's current
// key set still holds the very key the token was checked with. A key dropped
// from the JWKS therefore stops its cached tokens at the same moment it stops
// fresh ones, and the cache adds no staleness of its own. Only successes are
// cached: a rejected token is parsed again every time, as before.
//
// Sharded maps with one arbitrary eviction when full, as the gateway's
// gateway/internal/authn (which keys on fasthttp header bytes and keeps only
// the subject) does; a general LRU library would add a list node and a lock
// on every hit for an ordering this cache does not need.
type tokenCache struct {
	seed maphash.Seed
	// perShard bounds each shard, so the whole cache holds at most
	// perShard × len(shards) tokens.
	perShard int
	shards   [16]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cachedToken
}

type cachedToken struct {
	claims Claims
	kid    string
	key    ed25519.PublicKey
}

func newTokenCache(entries int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), perShard: max(1, entries/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cachedToken)
	}
	return c
}

func (c *tokenCache) shard(token string) *cacheShard {
	return &c.shards[maphash.String(c.seed, token)%uint64(len(c.shards))]
}

// get returns the cached claims of token if it is still valid at now with the
// given leeway and set still maps its kid to the key it was verified with.
func (c *tokenCache) get(token string, now time.Time, leeway time.Duration, set *keySet) (Claims, bool) {
	s := c.shard(token)
	s.mu.RLock()
	e, ok := s.m[token]
	s.mu.RUnlock()
	if !ok {
		return Claims{}, false
	}
	if set != nil && !now.After(e.claims.ExpiresAt.Add(leeway)) {
		if k, found := set.byKid[e.kid]; found && k.Equal(e.key) {
			return e.claims, true
		}
	}
	// Expired or its key is gone: drop it now rather than wait for eviction.
	s.mu.Lock()
	delete(s.m, token)
	s.mu.Unlock()
	return Claims{}, false
}

func (c *tokenCache) put(token string, e cachedToken) {
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[token]; !ok && len(s.m) >= c.perShard {
		// Evict one arbitrary entry: Go's map order is random enough that a
		// flood of distinct tokens cannot pin the memory, and it is O(1).
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[token] = e
}
