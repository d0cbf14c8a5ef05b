package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

// LogoutHandler ends a session.
type LogoutHandler struct{ d Deps }

// Handle revokes the family of the presented refresh token, so every token
// rotated from the same login stops working. An unknown token is not an
// error: logging out twice must succeed, and the answer must not reveal
// whether a guessed token exists.
func (h LogoutHandler) Handle(ctx context.Context, secret string) error {
	t, err := h.d.Sessions.ByHash(ctx, session.Hash(secret))
	if errors.Is(err, session.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if err := h.d.Sessions.RevokeFamily(ctx, t.FamilyID, h.d.Now().UTC()); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	h.d.Logger.InfoContext(ctx, "session ended", "user_id", t.UserID, "family_id", t.FamilyID)
	return nil
}
