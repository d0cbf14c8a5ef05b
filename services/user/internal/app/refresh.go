package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

// RefreshHandler exchanges a refresh token for a new pair.
type RefreshHandler struct {
	d     Deps
	issue tokenIssuer
}

// Handle rotates the token: the presented one is spent and a successor in
// the same family is issued. Presenting a spent token revokes the whole
// family (RFC 9700 §4.14.2): the legitimate client and the thief both lose
// their sessions, and the user logs in again.
func (h RefreshHandler) Handle(ctx context.Context, secret string) (Tokens, error) {
	old, err := h.d.Sessions.ByHash(ctx, session.Hash(secret))
	if errors.Is(err, session.ErrNotFound) {
		return Tokens{}, session.ErrInvalid
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	now := h.d.Now().UTC()
	if err := old.Check(now); err != nil {
		if errors.Is(err, session.ErrSpent) {
			return Tokens{}, h.revokeOnReuse(ctx, old)
		}
		return Tokens{}, err
	}
	next, nextSecret, err := session.Issue(h.d.NewID(), old.FamilyID, old.UserID, now, h.d.RefreshTTL)
	if err != nil {
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	// The successor never outlives the family's first login: rotation keeps
	// a session alive, it does not extend it forever.
	if next.ExpiresAt.After(old.ExpiresAt) {
		next.ExpiresAt = old.ExpiresAt
	}
	// Between the lookup and here another refresh of this token may have
	// spent it (a reuse: ErrSpent), or a logout revoked it (ErrInvalid, no
	// reuse: it was presented once).
	if err := h.d.Sessions.Rotate(ctx, old, next, now); err != nil {
		if errors.Is(err, session.ErrSpent) {
			return Tokens{}, h.revokeOnReuse(ctx, old)
		}
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	return h.issue.tokens(old.UserID, now, next, nextSecret)
}

// revokeOnReuse revokes the family of a spent token presented again, even
// if the request that presented it has ended (see revoking).
func (h RefreshHandler) revokeOnReuse(ctx context.Context, t session.RefreshToken) error {
	ctx, cancel := revoking(ctx)
	defer cancel()
	h.d.Logger.WarnContext(ctx, "refresh token reused, revoking its family",
		"user_id", t.UserID, "family_id", t.FamilyID, "token_id", t.ID)
	if err := h.d.Sessions.RevokeFamily(ctx, t.FamilyID, h.d.Now().UTC()); err != nil {
		return fmt.Errorf("refresh: revoke family %s: %w", t.FamilyID, err)
	}
	return session.ErrInvalid
}
