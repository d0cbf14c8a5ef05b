// Package authn turns a bearer token into a user id, caching verified tokens.
//
// Why a cache: an Ed25519 signature check costs tens of microseconds, several
// times what the rest of the gateway spends on a request, while a client
// sends the same access token for its whole 15-minute life. The cache keys on
// the exact token bytes and never outlives the token's expiry or MaxAge, so
// it answers exactly what a fresh verification would have answered within
// that window (a key withdrawn from the JWKS stops verifying after MaxAge,
// the same staleness pkg/auth's key-set cache already accepts).
package authn

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// Verify checks a token and returns its subject and expiry (pkg/auth's
// Verifier, adapted by the caller).
type Verify func(ctx context.Context, token string) (subject string, expires time.Time, err error)

// ErrNoToken means the Authorization header carries no bearer token.
var ErrNoToken = errors.New("no bearer token")

// Cache verifies tokens, remembering successes.
type Cache struct {
	verify Verify
	maxAge time.Duration
	max    int
	now    func() time.Time
	// seed picks a shard with maphash (AES-based, a few ns for a 400-byte
	// JWT), where a byte-at-a-time FNV over the whole token cost ~2% of the
	// gateway's CPU.
	seed   maphash.Seed
	shards [16]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[string]entry
}

type entry struct {
	subject string
	until   time.Time
}

// Options tune a Cache. Zero values: MaxAge 1 minute, MaxEntries 65536.
type Options struct {
	MaxAge     time.Duration
	MaxEntries int
	Now        func() time.Time
}

// New wraps verify with a cache.
func New(verify Verify, o Options) *Cache {
	if o.MaxAge == 0 {
		o.MaxAge = time.Minute
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 1 << 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cache{verify: verify, maxAge: o.MaxAge, max: o.MaxEntries, now: o.Now, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string]entry{}
	}
	return c
}

// Bearer extracts the token from an Authorization value ("Bearer <t>",
// scheme case-insensitive), or nil.
func Bearer(authz []byte) []byte {
	const scheme = "bearer "
	if len(authz) <= len(scheme) || !bytes.EqualFold(authz[:len(scheme)], []byte(scheme)) {
		return nil
	}
	return bytes.TrimSpace(authz[len(scheme):])
}

// Subject verifies token (or finds it verified) and returns its subject.
func (c *Cache) Subject(ctx context.Context, token []byte) (string, error) {
	if len(token) == 0 {
		return "", ErrNoToken
	}
	now := c.now()
	s, e, ok := c.lookup(token)
	if ok && now.Before(e.until) {
		return e.subject, nil
	}
	sub, exp, err := c.verify(ctx, string(token))
	if err != nil {
		if ok {
			s.mu.Lock()
			delete(s.m, string(token))
			s.mu.Unlock()
		}
		return "", err
	}
	until := now.Add(c.maxAge)
	if exp.Before(until) {
		until = exp
	}
	s.mu.Lock()
	if len(s.m) >= c.max/len(c.shards) {
		// Evict one arbitrary entry: map order is random enough to keep a
		// flood of distinct tokens from pinning memory, and cheap.
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[string(token)] = entry{subject: sub, until: until}
	s.mu.Unlock()
	return sub, nil
}
