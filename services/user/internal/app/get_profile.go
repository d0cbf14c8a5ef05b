package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// GetProfileHandler reads a user's own profile, cache first.
type GetProfileHandler struct{ d Deps }

// cacheMiss marks a cache error that still leaves a miss (a value the cache
// read but could not decode): the generation Get returned with it is good.
type cacheMiss interface{ Miss() bool }

// Handle serves from the cache when it can. A cache failure is logged and
// read through to the store: the cache speeds the service up but never takes
// it down. A miss is filled only in the generation it was seen in, so a fill
// that read the store before an update cannot land after the update's Delete
// and serve the old profile for a whole TTL. An unreadable cached value is a
// miss like any other: the fill replaces it, so it is reported once, not at
// every read until its TTL ends.
func (h GetProfileHandler) Handle(ctx context.Context, userID string) (user.Profile, error) {
	p, gen, ok, cacheErr := h.d.Profiles.Get(ctx, userID)
	fill := cacheErr == nil
	if cacheErr != nil {
		var miss cacheMiss
		if fill = errors.As(cacheErr, &miss) && miss.Miss(); fill {
			h.d.Logger.WarnContext(ctx, "profile cache value unreadable, replacing it", "user_id", userID, "error", cacheErr.Error())
		} else {
			h.d.Logger.WarnContext(ctx, "profile cache read failed", "error", cacheErr.Error())
		}
	}
	if ok {
		return p, nil
	}
	u, err := h.d.Users.ByID(ctx, userID)
	if err != nil {
		return user.Profile{}, fmt.Errorf("get profile: %w", err)
	}
	p = u.Profile()
	if !fill {
		return p, nil // no generation to fill in
	}
	if err := h.d.Profiles.Set(ctx, p, gen); err != nil {
		h.d.Logger.WarnContext(ctx, "profile cache write failed", "error", err.Error())
	}
	return p, nil
}
