package adapters_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// uniq keeps tests that share the Redis server apart.
func uniq(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// generation is the profile's generation as Delete stored it; never "".
func generation(t *testing.T, rdb *redis.Client, id string) string {
	t.Helper()
	gen, err := rdb.Get(t.Context(), "user:profile-gen:"+id).Result()
	if err != nil || gen == "" {
		t.Fatalf("generation of %s: %q %v", id, gen, err)
	}
	return gen
}

func TestProfileRedis(t *testing.T) {
	rdb := redisClient(t)
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	ctx := t.Context()
	id := uniq("u")
	_, gen, ok, err := cache.Get(ctx, id)
	if ok || err != nil {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	p := user.Profile{ID: id, Email: "alice@example.com", Name: "Alice",
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 123, time.UTC), UpdatedAt: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
	if err := cache.Set(ctx, p, gen); err != nil {
		t.Fatal(err)
	}
	got, _, ok, err := cache.Get(ctx, id)
	if err != nil || !ok || got != p {
		t.Fatalf("Get = %+v ok=%v err=%v", got, ok, err)
	}
	ttl := rdb.TTL(ctx, "user:profile:"+id).Val()
	if ttl <= 0 || ttl > time.Minute {
		t.Fatalf("ttl = %v, want (0, 1m]", ttl)
	}
	if err := cache.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := cache.Get(ctx, id); ok {
		t.Fatal("deleted profile still cached")
	}
	// A corrupt entry is reported as a miss in the current generation (this
	// profile has one since the Delete), so the fill replaces it: it used to
	// come back without its generation, and the fill never stored.
	rdb.Set(ctx, "user:profile:"+id, "{not json", time.Minute)
	_, gen, ok, err = cache.Get(ctx, id)
	var miss interface{ Miss() bool }
	if want := generation(t, rdb, id); ok || !errors.As(err, &miss) || !miss.Miss() || gen != want {
		t.Fatalf("corrupt entry: ok=%v gen=%q err=%v, want a miss in generation %q", ok, gen, err, want)
	}
	if err := cache.Set(ctx, p, gen); err != nil {
		t.Fatal(err)
	}
	if got, _, ok, err := cache.Get(ctx, id); err != nil || !ok || got != p {
		t.Fatalf("after the fill: %+v ok=%v err=%v, want the corrupt entry replaced", got, ok, err)
	}
}

func TestProfileRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	var miss interface{ Miss() bool }
	if _, _, ok, err := cache.Get(t.Context(), "u"); ok || err == nil || errors.As(err, &miss) {
		t.Fatalf("down: ok=%v err=%v, want a failed read, not a miss", ok, err)
	}
}

// A fill that read the store before an update (its Get missed before the
// update's Delete) stores nothing: it used to land after the Delete and serve
// the old profile for the whole TTL. A fill in the new generation stores.
func TestProfileRedisFillDoesNotOutliveAnUpdate(t *testing.T) {
	rdb := redisClient(t)
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	ctx := t.Context()
	id := uniq("u")
	old := user.Profile{ID: id, Email: "alice@example.com", Name: "Old"}
	for round := range 2 { // the second round with a generation counter already there
		_, before, ok, err := cache.Get(ctx, id)
		if ok || err != nil {
			t.Fatalf("round %d: miss expected: ok=%v err=%v", round, ok, err)
		}
		if err := cache.Delete(ctx, id); err != nil { // the update, committed after the fill's read
			t.Fatal(err)
		}
		if err := cache.Set(ctx, old, before); err != nil {
			t.Fatal(err)
		}
		if got, _, ok, _ := cache.Get(ctx, id); ok {
			t.Fatalf("round %d: a fill from before the update was cached: %+v", round, got)
		}
	}
	if ttl := rdb.PTTL(ctx, "user:profile-gen:"+id).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("generation ttl = %v, want (0, 1m]", ttl)
	}
	_, now, _, _ := cache.Get(ctx, id)
	fresh := user.Profile{ID: id, Email: "alice@example.com", Name: "New"}
	if err := cache.Set(ctx, fresh, now); err != nil {
		t.Fatal(err)
	}
	if got, _, ok, _ := cache.Get(ctx, id); !ok || got != fresh {
		t.Fatalf("a fill after the update: %+v ok=%v", got, ok)
	}
}

// A fill that read the store before an update stores nothing even when the
// generation it saw expired in between: the counter started over at 1 after
// its expiry, so the update's Delete made the same generation again and the
// old profile was cached for the whole TTL.
func TestProfileRedisFillDoesNotOutliveAnUpdateAfterItsGenerationExpired(t *testing.T) {
	rdb := redisClient(t)
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	ctx := t.Context()
	id := uniq("u")
	if err := cache.Delete(ctx, id); err != nil { // an earlier update
		t.Fatal(err)
	}
	_, before, ok, err := cache.Get(ctx, id) // the fill's read, just before the generation's TTL ends
	if ok || err != nil || before == "" {
		t.Fatalf("miss in a generation expected: gen=%q ok=%v err=%v", before, ok, err)
	}
	// The generation's TTL ends (what its expiry does, without the wait).
	if err := rdb.Del(ctx, "user:profile-gen:"+id).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cache.Delete(ctx, id); err != nil { // the update, committed after the fill's read
		t.Fatal(err)
	}
	if err := cache.Set(ctx, user.Profile{ID: id, Email: "alice@example.com", Name: "Old"}, before); err != nil {
		t.Fatal(err)
	}
	if got, _, ok, _ := cache.Get(ctx, id); ok {
		t.Fatalf("a fill from before the update was cached: %+v", got)
	}
	// A replica still on the counter during a rollout can increment it.
	if err := rdb.Incr(ctx, "user:profile-gen:"+id).Err(); err != nil {
		t.Fatalf("INCR of the generation: %v", err)
	}
}

// Delete invalidates even when its caller's context has ended: it follows a
// committed update, and a deadline passing (or the client going away) in
// between used to skip it, serving the old profile for the whole TTL.
func TestProfileRedisDeleteOutlivesItsCaller(t *testing.T) {
	rdb := redisClient(t)
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for name, ended := range map[string]context.Context{"cancelled": cancelled, "deadline passed": expired} {
		id := uniq("u")
		_, gen, _, _ := cache.Get(t.Context(), id)
		if err := cache.Set(t.Context(), user.Profile{ID: id, Name: "Old"}, gen); err != nil {
			t.Fatal(err)
		}
		if err := cache.Delete(ended, id); err != nil {
			t.Errorf("%s: Delete: %v", name, err)
		}
		if got, gen, ok, err := cache.Get(t.Context(), id); ok || err != nil || gen != generation(t, rdb, id) {
			t.Errorf("%s: after Delete: %+v gen=%q ok=%v err=%v, want a miss in the new generation", name, got, gen, ok, err)
		}
	}
}

// A cached value that is JSON but not this user's profile ({}, null, one
// without an id, another user's) is a miss in the current generation and is
// deleted: it used to be served as the profile, an empty one for {}.
func TestProfileRedisValueThatIsNotTheProfileIsAMiss(t *testing.T) {
	rdb := redisClient(t)
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	ctx := t.Context()
	for name, value := range map[string]string{
		"empty object":  `{}`,
		"null":          `null`,
		"no id":         `{"email":"alice@example.com","name":"Alice"}`,
		"another id":    `{"id":"someone-else","email":"mallory@example.com","name":"Mallory"}`,
		"not an object": `"alice"`,
	} {
		t.Run(name, func(t *testing.T) {
			id := uniq("u")
			if err := cache.Delete(ctx, id); err != nil { // a generation, to see it returned
				t.Fatal(err)
			}
			rdb.Set(ctx, "user:profile:"+id, value, time.Minute)
			got, gen, ok, err := cache.Get(ctx, id)
			var miss interface{ Miss() bool }
			if want := generation(t, rdb, id); ok || !errors.As(err, &miss) || !miss.Miss() || gen != want {
				t.Fatalf("Get = %+v ok=%v gen=%q err=%v, want a miss in generation %q", got, ok, gen, err, want)
			}
			if n := rdb.Exists(ctx, "user:profile:"+id).Val(); n != 0 {
				t.Fatalf("the value %s is still cached", value)
			}
			p := user.Profile{ID: id, Email: "alice@example.com", Name: "Alice"}
			if err := cache.Set(ctx, p, gen); err != nil {
				t.Fatal(err)
			}
			if got, _, ok, err := cache.Get(ctx, id); err != nil || !ok || got != p {
				t.Fatalf("after the fill: %+v ok=%v err=%v", got, ok, err)
			}
		})
	}
}

// On a full Redis (the deploy stacks' noeviction refuses what could grow
// memory) Delete still drops the cached profile: it ran the DEL and the
// generation's SET in one MULTI, which Redis refused whole (EXECABORT), so
// after a PATCH the old profile was served for the whole TTL. A fill that
// read the old generation and the old row before the change stores nothing.
func TestProfileRedisDeleteInvalidatesOnAFullRedis(t *testing.T) {
	ctx := t.Context()
	id := uniq("u")
	old := user.Profile{ID: id, Email: "alice@example.com", Name: "Old"}
	var before string // the generation a fill from before the change read
	rdb := testenv.FullRedis(t, func(rdb *redis.Client) {
		cache := adapters.NewProfileRedis(rdb, time.Minute)
		_, gen, _, err := cache.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Set(ctx, old, gen); err != nil {
			t.Fatal(err)
		}
		before = gen
	})
	cache := adapters.NewProfileRedis(rdb, time.Minute)
	if err := cache.Delete(ctx, id); err != nil {
		t.Errorf("Delete on a full Redis: %v", err)
	}
	if got, _, ok, err := cache.Get(ctx, id); ok || err != nil {
		t.Fatalf("after Delete on a full Redis: %+v ok=%v err=%v, want a miss", got, ok, err)
	}
	_ = cache.Set(ctx, old, before) // refused (full) or not, it must not store
	if got, _, ok, err := cache.Get(ctx, id); ok || err != nil {
		t.Fatalf("a fill from before the change: %+v ok=%v err=%v, want a miss", got, ok, err)
	}
}
