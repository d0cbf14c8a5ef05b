package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

type refreshRow struct {
	ID        string `gorm:"primaryKey"`
	FamilyID  string
	UserID    string
	TokenHash string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
	RevokedAt *time.Time
}

func (refreshRow) TableName() string { return "refresh_tokens" }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func toRefreshRow(t session.RefreshToken) refreshRow {
	return refreshRow{ID: t.ID, FamilyID: t.FamilyID, UserID: t.UserID, TokenHash: t.Hash,
		CreatedAt: t.CreatedAt.UTC(), ExpiresAt: t.ExpiresAt.UTC(), UsedAt: utcPtr(t.UsedAt), RevokedAt: utcPtr(t.RevokedAt)}
}

func (r refreshRow) token() session.RefreshToken {
	return session.RefreshToken{ID: r.ID, FamilyID: r.FamilyID, UserID: r.UserID, Hash: r.TokenHash,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), UsedAt: utcPtr(r.UsedAt), RevokedAt: utcPtr(r.RevokedAt)}
}

// SessionGorm is the session.Repository on gorm.
type SessionGorm struct{ db *gorm.DB }

// NewSessionGorm stores refresh tokens in db.
func NewSessionGorm(db *gorm.DB) *SessionGorm { return &SessionGorm{db: db} }

var _ session.Repository = (*SessionGorm)(nil)

// Create stores a new token.
func (r *SessionGorm) Create(ctx context.Context, t session.RefreshToken) error {
	row := toRefreshRow(t)
	if err := r.db.WithContext(ctx).Create(&row).Error; err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
}

// ByHash returns session.ErrNotFound for an unknown hash.
func (r *SessionGorm) ByHash(ctx context.Context, hash string) (session.RefreshToken, error) {
	var row refreshRow
	err := r.db.WithContext(ctx).Where("token_hash = ?", hash).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return session.RefreshToken{}, session.ErrNotFound
	}
	if err != nil {
		return session.RefreshToken{}, fmt.Errorf("load refresh token: %w", err)
	}
	return row.token(), nil
}

// Rotate spends old and stores next in one transaction. The conditional
// UPDATE is the arbiter: of two concurrent rotations of one token exactly
// one sees a row still unused and unrevoked; the other affects no row and
// gets session.ErrSpent, with nothing stored.
func (r *SessionGorm) Rotate(ctx context.Context, old, next session.RefreshToken, now time.Time) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&refreshRow{}).
			Where("id = ? AND used_at IS NULL AND revoked_at IS NULL", old.ID).
			Update("used_at", now.UTC())
		if res.Error != nil {
			return fmt.Errorf("spend refresh token: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return session.ErrSpent
		}
		row := toRefreshRow(next)
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("store rotated refresh token: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rotate refresh token %s: %w", old.ID, err)
	}
	return nil
}

// RevokeFamily revokes the family's tokens that are not revoked yet.
func (r *SessionGorm) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	err := r.db.WithContext(ctx).Model(&refreshRow{}).
		Where("family_id = ? AND revoked_at IS NULL", familyID).
		Update("revoked_at", now.UTC()).Error
	if err != nil {
		return fmt.Errorf("revoke refresh family %s: %w", familyID, err)
	}
	return nil
}
