package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

// LogoutHandler ends a session.
type LogoutHandler struct{ d Deps }

// Handle revokes the family of the presented refresh token, so every token
// rotated from the same login stops working. An unknown token is not an
// error: logging out twice must succeed, and the answer must not reveal
// whether a guessed token exists. A logout received is carried out even if
// its client goes away or its deadline passes (see revoking).
func (h LogoutHandler) Handle(ctx context.Context, secret string) error {
	ctx, cancel := revoking(ctx)
	defer cancel()
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

// revokeTimeout bounds a revocation in place of its caller's deadline.
const revokeTimeout = 5 * time.Second

// revoking is ctx without its cancellation and deadline, bounded by
// revokeTimeout instead, for a revocation the service has decided on (a
// logout received, a reused token detected). On the request's context, a
// client that went away at once (one logging out as it closes rarely waits
// for the answer) or a deadline that passed cancelled it, and the session
// lived on while its owner believed it ended.
func revoking(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
}
