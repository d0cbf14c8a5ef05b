package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// GetProfileHandler reads a user's own profile, cache first.
type GetProfileHandler struct{ d Deps }

// Handle serves from the cache when it can. A cache failure is logged and
// read through to the store: the cache speeds the service up but never takes
// it down. A miss is filled only in the generation it was seen in, so a fill
// that read the store before an update cannot land after the update's Delete
// and serve the old profile for a whole TTL.
func (h GetProfileHandler) Handle(ctx context.Context, userID string) (user.Profile, error) {
	p, gen, ok, cacheErr := h.d.Profiles.Get(ctx, userID)
	if cacheErr != nil {
		h.d.Logger.WarnContext(ctx, "profile cache read failed", "error", cacheErr.Error())
	}
	if ok {
		return p, nil
	}
	u, err := h.d.Users.ByID(ctx, userID)
	if err != nil {
		return user.Profile{}, fmt.Errorf("get profile: %w", err)
	}
	p = u.Profile()
	if cacheErr != nil {
		return p, nil // no generation to fill in
	}
	if err := h.d.Profiles.Set(ctx, p, gen); err != nil {
		h.d.Logger.WarnContext(ctx, "profile cache write failed", "error", err.Error())
	}
	return p, nil
}
