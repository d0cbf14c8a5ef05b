package auth

import (
	"crypto/ed25519"
	"hash/maphash"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/readmap"
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
// The key may be given as a string (services, from net/http headers) or as
// bytes (the gateway, from fasthttp's reused header buffers): a lookup with
// m[string(b)] does not copy b, so a hit costs the gateway no allocation,
// and put stores a string of its own, never the caller's buffer. This is the
// platform's one verified-token cache; the gateway's used to be a second one
// in front of it.
//
// Sharded maps with one arbitrary eviction when full; a general LRU library
// would add a list node and a lock on every hit for an ordering this cache
// does not need. A hit takes no lock at all (cacheShard.ro).
type tokenCache struct {
	seed maphash.Seed
	// perShard bounds each shard, so the whole cache holds at most
	// perShard × len(shards) tokens.
	perShard int
	shards   [16]cacheShard
}

type cacheShard struct {
	// ro is the copy of m that hits read without a lock (package
	// readmap). Deletions (eviction, expiry) are not copied at once: an
	// entry ro still holds is checked like any other before it answers,
	// and an evicted one that still verifies may answer. So ro and m
	// together hold at most twice the cache's bound.
	ro readmap.Copy[*cachedToken]
	mu sync.Mutex // m, ro's misses
	// m holds pointers: an entry (160 bytes) above the runtime's 128-byte
	// limit for map values stored in place sends every lookup down the
	// map's slow path, which hashes the whole token even in a small map.
	m map[string]*cachedToken
}

type cachedToken struct {
	claims Claims
	until  time.Time // claims.ExpiresAt plus the verifier's leeway, as the parser allows
	kid    string
	key    ed25519.PublicKey
	// set is the key set key was found in. While it is still the
	// verifier's, a hit needs no kid lookup (a map lookup per request);
	// after a refresh the keys are compared.
	set *keySet
}

func newTokenCache(entries int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), perShard: max(1, entries/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cachedToken)
	}
	return c
}

// shardOf picks token's shard by a seeded maphash of its last 16 bytes,
// which lie in the Ed25519 signature of any token that can be cached (only
// verified ones are) and so are as random as the whole token: hashing all
// of a 350-byte JWT was a fifth of a cache hit (BenchmarkVerifyCached). A
// client choosing its own token's tail gains nothing: an unverifiable token
// is never stored, and a lookup only reads its shard.
func shardOf[T string | []byte](c *tokenCache, token T) *cacheShard {
	tail := token[max(0, len(token)-16):]
	var h uint64
	switch t := any(tail).(type) {
	case string:
		h = maphash.String(c.seed, t)
	case []byte:
		h = maphash.Bytes(c.seed, t)
	}
	return &c.shards[h%uint64(len(c.shards))]
}

// cacheGet returns the cached claims of token if it is still valid at now
// (before exp plus the leeway) and set still maps its kid to the key it was
// verified with. (A function, not a method: methods cannot have type
// parameters.)
func cacheGet[T string | []byte](c *tokenCache, token T, now time.Time, set *keySet) (Claims, bool) {
	s := shardOf(c, token)
	// No copy of a []byte: the compiler special-cases a map index.
	if e, ok := s.ro.Load()[string(token)]; ok && e.answers(now, set) {
		return e.claims, true
	}
	// Not in the copy, or its entry there no longer answers: m decides.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ro.Missed(s.m)
	e, ok := s.m[string(token)]
	if !ok {
		return Claims{}, false
	}
	if e.answers(now, set) {
		return e.claims, true
	}
	// Expired or its key is gone: drop it now rather than wait for eviction.
	delete(s.m, string(token))
	return Claims{}, false
}

// answers says whether e may answer at now for key set set: before exp plus
// the leeway, and set still maps its kid to the key it was verified with.
func (e *cachedToken) answers(now time.Time, set *keySet) bool {
	// Strictly before: the parser refuses a token from exp plus the leeway
	// on, and the cache must not outlive it by that instant.
	if set == nil || !now.Before(e.until) {
		return false
	}
	if e.set == set {
		return true
	}
	// The same key set as at verification holds the very same slice;
	// after a refresh the bytes are compared.
	k, found := set.byKid[e.kid]
	return found && len(k) > 0 && len(e.key) > 0 && (&k[0] == &e.key[0] || k.Equal(e.key))
}

// put remembers a verified token. token is a string of the caller's own
// (Verify's argument, or VerifyBytes's copy), never a view of a buffer.
func (c *tokenCache) put(token string, e *cachedToken) {
	s := shardOf(c, token)
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
	s.ro.Missed(s.m)
}
