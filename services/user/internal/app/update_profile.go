package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// UpdateProfile is a partial update; nil fields stay as they are.
type UpdateProfile struct {
	Name *string
}

// UpdateProfileHandler changes a user's own profile.
type UpdateProfileHandler struct{ d Deps }

// Handle stores the change, then drops the cached profile so the next read
// sees it. Deleting after the commit (rather than writing the new value)
// never caches a value that was not committed, and a concurrent reader that
// read the old profile cannot cache it again: Delete starts a new generation
// and its fill was for the old one.
func (h UpdateProfileHandler) Handle(ctx context.Context, userID string, up UpdateProfile) (user.Profile, error) {
	u, err := h.d.Users.Update(ctx, userID, func(u *user.User) error {
		if up.Name != nil {
			return u.Rename(*up.Name, h.d.Now().UTC())
		}
		return nil
	})
	if err != nil {
		return user.Profile{}, fmt.Errorf("update profile: %w", err)
	}
	if err := h.d.Profiles.Delete(ctx, userID); err != nil {
		// The store has the new profile. The cache keeps the invalidation
		// pending and retries it; this replica reads past the cache for the
		// profile until it succeeds (adapters.ProfileRedis).
		h.d.Logger.ErrorContext(ctx, "profile cache invalidation failed", "user_id", userID, "error", err.Error())
	}
	return u.Profile(), nil
}
