package adapters

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// CredentialsGorm is app.CredentialStore on gorm: accounts and refresh
// tokens live in one database, so a password change is one transaction.
type CredentialsGorm struct{ db *gorm.DB }

// NewCredentialsGorm changes passwords in db, the database of both
// UserGorm and SessionGorm.
func NewCredentialsGorm(db *gorm.DB) *CredentialsGorm { return &CredentialsGorm{db: db} }

// ReplacePassword stores hash over old (UserGorm.SetPasswordHash) and
// revokes every refresh token of the account (SessionGorm.RevokeUser) in one
// transaction. Apart, a revocation that failed after the hash was stored left
// the sessions alive behind a 5xx, and the client's retry failed on a current
// password that was no longer current; a login with the new password between
// the two lost the session it had just opened. The user's row is locked first
// (the UPDATE: FOR NO KEY UPDATE on PostgreSQL) and the families after it. A
// rotation takes them the other way round, its family and then, for the
// INSERT's foreign key, the row FOR KEY SHARE; the two row locks do not
// conflict, so neither waits for the other there
// (TestSessionGormRevokeFamilyWaitsForRotation). A login's rehash takes the
// row alone.
func (c *CredentialsGorm) ReplacePassword(ctx context.Context, userID, old, hash string, now time.Time) error {
	err := c.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := NewUserGorm(tx).SetPasswordHash(ctx, userID, old, hash); err != nil {
			return err
		}
		return NewSessionGorm(tx).RevokeUser(ctx, userID, now)
	})
	if err != nil {
		return fmt.Errorf("replace password: %w", err)
	}
	return nil
}
