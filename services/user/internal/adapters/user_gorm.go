// Package adapters implements the user service's domain interfaces: gorm
// repositories (PostgreSQL or SQLite), the Redis profile cache, argon2id
// password hashing and the login guard on pkg/limit.
package adapters

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// Source is the CloudEvents source of every event this service emits.
const Source = "/shanhai/user"

// UsersTopic is the Kafka topic of account events.
const UsersTopic = "shanhai.users"

type userRow struct {
	ID    string `gorm:"primaryKey"`
	Email string
	// EmailVisible is user.VisibleEmail(Email) where that differs from
	// Email, else NULL (migration 0005 says why it is sparse).
	EmailVisible *string
	Name         string
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (userRow) TableName() string { return "users" }

func toUserRow(u user.User) userRow {
	return userRow{ID: u.ID, Email: u.Email, EmailVisible: visibleEmail(u.Email), Name: u.Name, PasswordHash: u.PasswordHash,
		CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
}

// visibleEmail is the email_visible column of an account stored under email.
func visibleEmail(email string) *string {
	if v := user.VisibleEmail(email); v != email {
		return &v
	}
	return nil
}

func (r userRow) user() user.User {
	return user.User{ID: r.ID, Email: r.Email, Name: r.Name, PasswordHash: r.PasswordHash,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// UserGorm is the user.Repository on gorm.
type UserGorm struct {
	db     *gorm.DB
	notify func()
}

// NewUserGorm stores accounts in db (migrated with the service's migrations
// and outbox.Migrations).
func NewUserGorm(db *gorm.DB) *UserGorm { return &UserGorm{db: db, notify: func() {}} }

// NotifyOnEvents makes Add call fn after a commit that wrote an outbox row
// (the relay's Nudge), so the event leaves within milliseconds rather than
// at the relay's next poll.
func (r *UserGorm) NotifyOnEvents(fn func()) *UserGorm {
	r.notify = fn
	return r
}

var _ user.Repository = (*UserGorm)(nil)

// Add inserts the account and its user.registered event in one transaction.
// The unique index on email decides races between two sign-ups.
func (r *UserGorm) Add(ctx context.Context, u user.User) error {
	env, err := event.New(user.RegisteredType, Source, u.ID, u.Registered())
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		row := toUserRow(u)
		// ON CONFLICT DO NOTHING turns a taken email into "no row inserted"
		// on both dialects, without an error for gorm to log at ERROR level
		// on every duplicate sign-up.
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
		if res.Error != nil {
			return fmt.Errorf("insert user: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return user.ErrEmailTaken
		}
		return outbox.Add(ctx, tx, UsersTopic, u.ID, env)
	})
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	r.notify()
	return nil
}

// ByID returns user.ErrNotFound for an unknown id.
func (r *UserGorm) ByID(ctx context.Context, id string) (user.User, error) {
	return r.take(ctx, "id = ?", id)
}

// ByEmail expects a normalised address.
func (r *UserGorm) ByEmail(ctx context.Context, email string) (user.User, error) {
	return r.take(ctx, "email = ?", email)
}

// EmailTaken looks email up in both columns: two index lookups (the unique
// index on email, the partial one on email_visible), whatever the number of
// accounts.
func (r *UserGorm) EmailTaken(ctx context.Context, email string) (bool, error) {
	var ids []string
	err := r.db.WithContext(ctx).Model(&userRow{}).Where("email = ? OR email_visible = ?", email, email).
		Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return false, fmt.Errorf("look up email: %w", err)
	}
	return len(ids) > 0, nil
}

// InvisibleEmails returns the ids, in order, of the accounts whose
// email_visible is set (their address holds a character sign-up refuses).
// They are sorted here, not by the query: ORDER BY id had SQLite walk the
// primary key through every account instead of the partial index.
func (r *UserGorm) InvisibleEmails(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.db.WithContext(ctx).Model(&userRow{}).Where("email_visible IS NOT NULL").Pluck("id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("list accounts with invisible characters in their email: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

func (r *UserGorm) take(ctx context.Context, where string, arg string) (user.User, error) {
	var row userRow
	err := r.db.WithContext(ctx).Where(where, arg).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return user.User{}, user.ErrNotFound
	}
	if err != nil {
		return user.User{}, fmt.Errorf("load user: %w", err)
	}
	return row.user(), nil
}

// SetPasswordHash replaces the hash of one account if it is still old: one
// conditional UPDATE, so no lock is held while the caller hashes.
func (r *UserGorm) SetPasswordHash(ctx context.Context, id, old, hash string) error {
	db := r.db.WithContext(ctx)
	res := db.Model(&userRow{}).Where("id = ? AND password_hash = ?", id, old).Update("password_hash", hash)
	if res.Error != nil {
		return fmt.Errorf("set password hash of %s: %w", id, res.Error)
	}
	if res.RowsAffected == 1 {
		return nil
	}
	var n int64
	if err := db.Model(&userRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
		return fmt.Errorf("set password hash of %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("set password hash of %s: %w", id, user.ErrNotFound)
	}
	return fmt.Errorf("set password hash of %s: %w", id, user.ErrHashChanged)
}

// Update locks the row (FOR UPDATE on PostgreSQL; SQLite's single writer
// serialises anyway), applies fn and writes the changed columns.
func (r *UserGorm) Update(ctx context.Context, id string, fn func(*user.User) error) (user.User, error) {
	var out user.User
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row userRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id).Take(&row).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return user.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock user: %w", err)
		}
		u := row.user()
		if err := fn(&u); err != nil {
			return err
		}
		next := toUserRow(u)
		// The id and the password hash are not fn's to change here.
		err = tx.Model(&userRow{}).Where("id = ?", id).Updates(map[string]any{
			"email": next.Email, "email_visible": next.EmailVisible, "name": next.Name, "updated_at": next.UpdatedAt,
		}).Error
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return user.ErrEmailTaken
		}
		if err != nil {
			return fmt.Errorf("write user: %w", err)
		}
		out = u
		out.PasswordHash = row.PasswordHash
		return nil
	})
	if err != nil {
		return user.User{}, fmt.Errorf("update user %s: %w", id, err)
	}
	return out, nil
}
