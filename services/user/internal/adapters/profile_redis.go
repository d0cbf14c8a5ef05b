package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// ProfileRedis is the user.ProfileCache in Redis: one JSON value per user
// under user:profile:<id>, with a TTL that bounds how long a missed
// invalidation could serve a stale profile.
type ProfileRedis struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewProfileRedis caches profiles for ttl.
func NewProfileRedis(rdb redis.UniversalClient, ttl time.Duration) *ProfileRedis {
	return &ProfileRedis{rdb: rdb, ttl: ttl}
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

// Get returns ok=false on a miss.
func (c *ProfileRedis) Get(ctx context.Context, id string) (user.Profile, bool, error) {
	b, err := c.rdb.Get(ctx, profileKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return user.Profile{}, false, nil
	}
	if err != nil {
		return user.Profile{}, false, fmt.Errorf("profile cache get: %w", err)
	}
	var p profileJSON
	if err := json.Unmarshal(b, &p); err != nil {
		// A value we cannot read is a miss; the next Set replaces it.
		return user.Profile{}, false, fmt.Errorf("profile cache decode: %w", err)
	}
	return user.Profile(p), true, nil
}

// Set caches p for the TTL.
func (c *ProfileRedis) Set(ctx context.Context, p user.Profile) error {
	b, err := json.Marshal(profileJSON(p))
	if err != nil {
		return fmt.Errorf("profile cache encode: %w", err)
	}
	if err := c.rdb.Set(ctx, profileKey(p.ID), b, c.ttl).Err(); err != nil {
		return fmt.Errorf("profile cache set: %w", err)
	}
	return nil
}

// Delete drops the cached profile.
func (c *ProfileRedis) Delete(ctx context.Context, id string) error {
	if err := c.rdb.Del(ctx, profileKey(id)).Err(); err != nil {
		return fmt.Errorf("profile cache delete: %w", err)
	}
	return nil
}
