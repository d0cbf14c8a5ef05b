package adapters

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// ProfileRedis is the user.ProfileCache in Redis: one JSON value per user
// under user:profile:<id>, with a TTL that bounds how long a missed
// invalidation could serve a stale profile, and the profile's generation
// under user:profile-gen:<id>, a random value Delete replaces and Set checks
// (one Redis server: the script that does so uses both keys).
//
// A Delete that fails (Redis unreachable from this replica, or stalled past
// the client's timeouts, while it still holds the old value) leaves the
// profile's invalidation pending: until it is carried out, this replica
// neither reads nor fills that profile in Redis, and it retries the
// invalidation in the background until it succeeds or the TTL has run out
// (by then the old value has expired on its own).
type ProfileRedis struct {
	rdb redis.UniversalClient
	ttl time.Duration

	// npending is len(pending), read without the lock: Get checks it on
	// every read, and an invalidation is almost never pending.
	npending atomic.Int64
	mu       sync.Mutex
	pending  map[string]mark // by user id
	marks    uint64          // marks made, numbering them
	retrying bool            // a retry loop is running
}

// mark is a pending invalidation: seq tells a later failure's mark from it
// (an invalidation carried out before that failure must not settle it), and
// until is when the retries may stop.
type mark struct {
	seq   uint64
	until time.Time
}

// NewProfileRedis caches profiles for ttl.
func NewProfileRedis(rdb redis.UniversalClient, ttl time.Duration) *ProfileRedis {
	return &ProfileRedis{rdb: rdb, ttl: ttl, pending: map[string]mark{}}
}

var _ user.ProfileCache = (*ProfileRedis)(nil)

// profileJSON is the cached form. It mirrors user.Profile, which has no
// password hash: the hash cannot reach the cache by construction.
type profileJSON struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func profileKey(id string) string { return "user:profile:" + id }
func genKey(id string) string     { return "user:profile-gen:" + id }

// Get returns ok=false on a miss. Both keys are read in one round trip; gen
// is "" while the profile was never deleted (or its generation expired). A
// value it cannot decode, or JSON that is not this user's profile ({}, null,
// no id, another id: served, it was an empty or someone else's profile), is
// a miss too, returned with the generation read and an error whose Miss
// method reports true, for the caller to log: the caller's fill in that
// generation replaces the value, where treating it as a failed read would
// keep it, and send every read to the store, until its TTL ends. Such a
// value is also deleted, so it is gone even when the fill cannot read the
// store.
func (c *ProfileRedis) Get(ctx context.Context, id string) (user.Profile, string, bool, error) {
	// The value Redis holds may be the one a failed Delete was to drop: carry
	// the invalidation out first, or read past the cache (no generation, so
	// no fill either).
	if m, ok := c.pendingMark(id); ok {
		if err := c.invalidate(ctx, id); err != nil {
			return user.Profile{}, "", false, fmt.Errorf("profile cache get: invalidation still pending: %w", err)
		}
		c.settle(id, m)
	}
	var value, gen *redis.StringCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		value, gen = p.Get(ctx, profileKey(id)), p.Get(ctx, genKey(id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return user.Profile{}, "", false, fmt.Errorf("profile cache get: %w", err)
	}
	g := gen.Val()
	b, err := value.Bytes()
	if errors.Is(err, redis.Nil) {
		return user.Profile{}, g, false, nil
	}
	if err != nil {
		return user.Profile{}, "", false, fmt.Errorf("profile cache get: %w", err)
	}
	var p profileJSON
	err = json.Unmarshal(b, &p)
	if err == nil && p.ID != id {
		err = fmt.Errorf("cached value is not the profile of %q (id %q)", id, p.ID)
	}
	if err != nil {
		// Best effort: the caller's fill replaces the value anyway, and a
		// failed delete only leaves it to be reported again.
		_ = delIfValue.Run(ctx, c.rdb, []string{profileKey(id)}, b).Err()
		return user.Profile{}, g, false, &unreadableError{err: err}
	}
	return user.Profile(p), g, true, nil
}

// delIfValue deletes KEYS[1] if it still holds ARGV[1], so a good profile
// that a fill stored since the read is not deleted with the bad one.
var delIfValue = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`)

// unreadableError is a cached value Get read but could not decode.
type unreadableError struct{ err error }

func (e *unreadableError) Error() string { return "profile cache decode: " + e.err.Error() }
func (e *unreadableError) Unwrap() error { return e.err }

// Miss reports that the read itself succeeded: Get's result is a miss in the
// generation it returned, for the caller to fill (the app matches this
// method, as it cannot import the adapter).
func (*unreadableError) Miss() bool { return true }

// setIfGen sets KEYS[1] to ARGV[1] for ARGV[2] ms if KEYS[2] (absent reads
// "") still holds ARGV[3]; in one script, so no Delete comes in between.
var setIfGen = redis.NewScript(`
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// Set caches p for the TTL, unless Delete ran since the Get that returned gen.
func (c *ProfileRedis) Set(ctx context.Context, p user.Profile, gen string) error {
	// A fill that read the generation before a failed Delete would pass the
	// check (the new generation was never stored) with a profile read before
	// the change.
	if _, ok := c.pendingMark(p.ID); ok {
		return fmt.Errorf("profile cache set: invalidation of %s pending", p.ID)
	}
	b, err := json.Marshal(profileJSON(p))
	if err != nil {
		return fmt.Errorf("profile cache encode: %w", err)
	}
	err = setIfGen.Run(ctx, c.rdb, []string{profileKey(p.ID), genKey(p.ID)}, b, c.ttl.Milliseconds(), gen).Err()
	if err != nil {
		return fmt.Errorf("profile cache set: %w", err)
	}
	return nil
}

// deleteTimeout bounds a Delete in place of its caller's deadline.
const deleteTimeout = time.Second

// Delete starts a new generation and then drops the cached profile, in one
// pipeline but not in a transaction: a full Redis (noeviction, as the deploy
// stacks run it) refuses the SET, which could grow memory, but never the
// DEL, and a MULTI holding both was refused whole (EXECABORT), so the old
// profile stayed cached for the whole TTL after a change. The SET goes
// first so that a fill which read the old generation and the old row
// cannot store after the DEL:
//   - SET stored: the fill fails setIfGen's check whenever it lands, before
//     or after the DEL (with the DEL first, one landing between the two
//     stored the old profile). A read between the two still gets the old
//     value, as a read just before the change did.
//   - SET refused: the generation stays the one the fill read, so the check
//     passes, but the fill's own SET is refused too while Redis is full.
//     Only a Redis that stops being full between the DEL and that fill (the
//     DEL's own freed bytes, an expiry) lets it store the old profile, which
//     is then served until the TTL, as after any missed invalidation.
//
// So only a failed DEL is an error: a refused SET alone leaves nothing
// stale cached. The generation lives as long as a cached value would: a fill
// still running after that is long past its request's deadline. It is a
// fresh random value, not a counter: a counter started over at 1 once it
// expired, so the next Delete made a generation that a fill, which read it
// before the expiry and the store before that Delete's change, still
// matched, and the old profile was cached for the whole TTL.
//
// Delete follows a committed change, so it runs even when the caller's
// context has ended (a deadline that passed after the commit, a client that
// went away): skipped, it would leave the old profile cached for the whole
// TTL. deleteTimeout stands in for the deadline it drops, so a Redis that
// stalls cannot hold the caller for long (the client's own read and write
// timeouts apply as before).
//
// A failed DEL leaves the invalidation pending (see ProfileRedis): it is
// carried out later, and this replica serves the profile from the store
// until then.
func (c *ProfileRedis) Delete(ctx context.Context, id string) error {
	m, pending := c.pendingMark(id)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if err := c.invalidate(ctx, id); err != nil {
		c.markPending(id)
		return err
	}
	if pending {
		// An earlier failure's invalidation is done by this one.
		c.settle(id, m)
	}
	return nil
}

// invalidate is Delete's work: a new generation, then the DEL, within ctx
// (Delete's outlives its caller; a read's is the request's).
func (c *ProfileRedis) invalidate(ctx context.Context, id string) error {
	// A decimal number below 2^62, so that a replica still running the
	// counter's code during a rollout can INCR it (an INCR of a non-number
	// fails that replica's Delete); 62 random bits make a repeat unlikely.
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("profile cache delete: generation: %w", err)
	}
	gen := strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>2, 10)
	var del *redis.IntCmd
	// Each command's own result is read below: the pipeline's error is the
	// first failed command's, a refused SET on a full Redis.
	_, _ = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, genKey(id), gen, c.ttl)
		del = p.Del(ctx, profileKey(id))
		return nil
	})
	if err := del.Err(); err != nil {
		return fmt.Errorf("profile cache delete: %w", err)
	}
	return nil
}

// Retry intervals of pending invalidations: short at first, so other
// replicas (which read Redis, not this replica's pending set) stop serving
// the old value soon after Redis answers again; bounded, so an outage costs
// one attempt per pending profile every few seconds.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

// pendingMark returns id's pending invalidation, if any.
func (c *ProfileRedis) pendingMark(id string) (mark, bool) {
	if c.npending.Load() == 0 {
		return mark{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.pending[id]
	return m, ok
}

// markPending records a failed invalidation and starts the retry loop if
// none runs. Retries may stop once the TTL has passed: every value stored
// before the change has expired by then, and no fill in the old generation
// stored since (Set refuses while pending).
func (c *ProfileRedis) markPending(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks++
	c.pending[id] = mark{seq: c.marks, until: time.Now().Add(c.ttl)}
	c.npending.Store(int64(len(c.pending)))
	if !c.retrying {
		c.retrying = true
		go c.retry()
	}
}

// settle ends id's pending invalidation m, carried out since m was read; a
// failure marked since then stays pending.
func (c *ProfileRedis) settle(id string, m mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] == m {
		delete(c.pending, id)
		c.npending.Store(int64(len(c.pending)))
	}
}

// retry carries out pending invalidations until none is left. It ends early
// when the client is closed (the service stopping): nothing can be
// invalidated any more, and the values expire by their TTL.
func (c *ProfileRedis) retry() {
	wait := retryFirst
	for {
		time.Sleep(wait)
		wait = min(2*wait, retryMax)
		c.mu.Lock()
		due := make(map[string]mark, len(c.pending))
		now := time.Now()
		for id, m := range c.pending {
			if now.After(m.until) {
				delete(c.pending, id)
				continue
			}
			due[id] = m
		}
		c.npending.Store(int64(len(c.pending)))
		c.mu.Unlock()
		closed := false
		for id, m := range due {
			ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
			err := c.invalidate(ctx, id)
			cancel()
			if err != nil {
				// Redis is still away: one failed attempt a round, however
				// many profiles wait.
				closed = errors.Is(err, redis.ErrClosed)
				break
			}
			c.settle(id, m)
		}
		c.mu.Lock()
		if closed {
			clear(c.pending)
			c.npending.Store(0)
		}
		if len(c.pending) == 0 {
			c.retrying = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}
