package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

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

// Rotate spends old and stores next in one transaction, under the family's
// lock (lockFamily). The conditional UPDATE is the arbiter: of two concurrent
// rotations of one token exactly one sees a row still unused and unrevoked;
// the other affects no row and gets session.ErrSpent, with nothing stored.
// A row the UPDATE missed because a revocation (a logout) came first is
// session.ErrInvalid instead: that token was presented once, and calling it
// spent made the refresh report a stolen token and revoke the family again.
func (r *SessionGorm) Rotate(ctx context.Context, old, next session.RefreshToken, now time.Time) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockFamily(tx, old.FamilyID); err != nil {
			return err
		}
		res := tx.Model(&refreshRow{}).
			Where("id = ? AND used_at IS NULL AND revoked_at IS NULL", old.ID).
			Update("used_at", now.UTC())
		if res.Error != nil {
			return fmt.Errorf("spend refresh token: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return notRotated(tx, old.ID)
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

// notRotated says why the token id, read under its family's lock, could not
// be spent: revoked (or gone) is session.ErrInvalid, used is session.ErrSpent.
// Revoked comes first, as in session.RefreshToken.Check: a revoked family has
// nothing left to revoke, whether or not this token was also used.
func notRotated(tx *gorm.DB, id string) error {
	var rows []refreshRow
	if err := tx.Select("used_at", "revoked_at").Where("id = ?", id).Find(&rows).Error; err != nil {
		return fmt.Errorf("read refresh token: %w", err)
	}
	if len(rows) == 0 || rows[0].RevokedAt != nil {
		return session.ErrInvalid
	}
	return session.ErrSpent
}

// RevokeFamily revokes the family's tokens that are not revoked yet, under
// the family's lock (lockFamily), so a rotation either ends before it (and the
// token it stored is revoked too) or starts after it (and finds its token
// revoked).
func (r *SessionGorm) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockFamily(tx, familyID); err != nil {
			return err
		}
		return tx.Model(&refreshRow{}).
			Where("family_id = ? AND revoked_at IS NULL", familyID).
			Update("revoked_at", now.UTC()).Error
	})
	if err != nil {
		return fmt.Errorf("revoke refresh family %s: %w", familyID, err)
	}
	return nil
}

// RevokeUser revokes the user's tokens that are not revoked yet, under the
// lock of each family that has one (lockFamily, taken in id order so two
// revocations of one user do not deadlock), for the reason RevokeFamily
// takes it: a rotation under way finishes first and its successor is
// revoked too, or starts after and finds its token revoked. A login's new
// family, stored after this commits, is not touched: that login checked the
// password before it changed, the window a change and a login racing leave.
func (r *SessionGorm) RevokeUser(ctx context.Context, userID string, now time.Time) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var roots []refreshRow
		families := tx.Model(&refreshRow{}).Distinct("family_id").Where("user_id = ? AND revoked_at IS NULL", userID)
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id IN (?)", families).Order("id").Find(&roots).Error
		if err != nil {
			return fmt.Errorf("lock refresh families: %w", err)
		}
		return tx.Model(&refreshRow{}).
			Where("user_id = ? AND revoked_at IS NULL", userID).
			Update("revoked_at", now.UTC()).Error
	})
	if err != nil {
		return fmt.Errorf("revoke refresh tokens of user %s: %w", userID, err)
	}
	return nil
}

// DeleteExpired deletes at most limit refresh tokens that expired before
// now, and says how many it deleted: nothing else ever removes a token, and
// an expired one can serve no purpose (a family's root expires last, so
// lockFamily never misses a root whose family can still be used). Bounded, a
// batch keeps its locks and its transaction short beside the logins it runs
// among.
func (r *SessionGorm) DeleteExpired(ctx context.Context, now time.Time, limit int) (int64, error) {
	res := r.db.WithContext(ctx).Exec(
		"DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens WHERE expires_at < ? LIMIT ?)", now.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("delete expired refresh tokens: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// lockFamily locks the family's root token (the login's, whose id is the
// family id) FOR UPDATE, so that Rotate and RevokeFamily of one family run
// one after the other. A revocation's UPDATE alone does not: under
// PostgreSQL's READ COMMITTED it waits for a concurrent rotation's lock on
// the token being spent, then revokes the rows its snapshot held, never the
// successor that rotation inserted, which outlived a logout or a detected
// reuse. Taking the lock first puts the UPDATE's snapshot after the rotation.
// SQLite's transactions begin IMMEDIATE and so run one at a time anyway (its
// gorm dialect drops the clause).
//
// The root exists as long as any token of the family can be used: a
// successor never outlives it (RefreshHandler caps its expiry) and only
// expired rows are deleted. A family without one has nothing left to lock for.
func lockFamily(tx *gorm.DB, familyID string) error {
	var rows []refreshRow
	err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id = ?", familyID).Find(&rows).Error
	if err != nil {
		return fmt.Errorf("lock refresh family %s: %w", familyID, err)
	}
	return nil
}
