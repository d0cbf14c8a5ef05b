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
// it down.
func (h GetProfileHandler) Handle(ctx context.Context, userID string) (user.Profile, error) {
	p, ok, err := h.d.Profiles.Get(ctx, userID)
	if err != nil {
		h.d.Logger.WarnContext(ctx, "profile cache read failed", "error", err.Error())
	}
	if ok {
		return p, nil
	}
	u, err := h.d.Users.ByID(ctx, userID)
	if err != nil {
		return user.Profile{}, fmt.Errorf("get profile: %w", err)
	}
	p = u.Profile()
	if err := h.d.Profiles.Set(ctx, p); err != nil {
		h.d.Logger.WarnContext(ctx, "profile cache write failed", "error", err.Error())
	}
	return p, nil
}
