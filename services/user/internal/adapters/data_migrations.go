package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// dataMigrations are the versioned steps SQL cannot express, by the name a
// schema migration queues them under in pending_data_migrations.
var dataMigrations = map[string]func(ctx context.Context, tx *gorm.DB, log *slog.Logger) error{
	"0002_email_nfkc": renormaliseEmails,
}

// RunDataMigrations runs every data migration the schema migrations queued,
// each in the transaction that deletes its queue row: a replica that finds
// the row gone (another one ran it meanwhile; on PostgreSQL the delete waits
// for that one's commit) skips it, and a step that fails leaves its row for
// the next start. Call it after the schema migrations.
func RunDataMigrations(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	var names []string
	if err := db.WithContext(ctx).Table("pending_data_migrations").Order("name").Pluck("name", &names).Error; err != nil {
		return fmt.Errorf("data migrations: %w", err)
	}
	for _, name := range names {
		step, ok := dataMigrations[name]
		if !ok {
			// Queued by a newer version this binary was rolled back from:
			// left for a binary that knows it.
			log.WarnContext(ctx, "data migration unknown to this version; left queued", "migration", name)
			continue
		}
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Exec("DELETE FROM pending_data_migrations WHERE name = ?", name)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				return nil
			}
			return step(ctx, tx, log)
		})
		if err != nil {
			return fmt.Errorf("data migration %s: %w", name, err)
		}
	}
	return nil
}

// renormaliseEmails stores each address in the form user.NormalizeEmail
// gives now (NFKC before and after lower-casing), for accounts stored when it
// only trimmed and lower-cased: login looks the new form up, so their owners
// could not log in. Rewriting them, rather than a login that also tries the
// stored form, also keeps sign-up from creating a look-alike beside them:
// the unique index sees one form.
//
// An account keeps its stored form, and is logged with the id of the account
// holding the address, when its new form is taken: by an account already
// stored under it (the one logging in with that address today; moving the
// other there would lock its owner out instead), or by an older account
// (created_at, then id) that two forms collapse to and that this step moved
// first. Two accounts under one address is what normalising forbids, so an
// operator settles those. An address the current rules refuse (NFKC turns
// a no-break space into a space) is kept and logged likewise. updated_at is
// left alone: the address reads the same to its owner.
func renormaliseEmails(ctx context.Context, tx *gorm.DB, log *slog.Logger) error {
	type stored struct{ ID, Email string }
	// The moves are listed first: the transaction's one connection cannot
	// query while it streams rows.
	var moves []stored
	rows, err := tx.Model(&userRow{}).Select("id", "email").Order("created_at, id").Rows()
	if err != nil {
		return fmt.Errorf("read emails: %w", err)
	}
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.ID, &s.Email); err != nil {
			rows.Close()
			return fmt.Errorf("read emails: %w", err)
		}
		if n, fe := user.NormalizeEmail(s.Email); fe != nil || n != s.Email {
			moves = append(moves, s)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read emails: %w", err)
	}

	moved, kept := 0, 0
	for _, s := range moves {
		n, fe := user.NormalizeEmail(s.Email)
		if fe != nil {
			log.WarnContext(ctx, "email kept as stored: refused by the current rules", "user_id", s.ID, "problem", fe.Detail)
			kept++
			continue
		}
		holder, err := emailHolder(tx, n)
		if err != nil {
			return fmt.Errorf("user %s: %w", s.ID, err)
		}
		if holder == "" {
			// In a savepoint: a sign-up on a running replica may take the
			// address between the look-up and the write.
			err = tx.Transaction(func(sp *gorm.DB) error {
				return sp.Model(&userRow{}).Where("id = ?", s.ID).UpdateColumn("email", n).Error
			})
			if err == nil {
				moved++
				continue
			}
			if !errors.Is(err, gorm.ErrDuplicatedKey) {
				return fmt.Errorf("user %s: store its new email: %w", s.ID, err)
			}
			if holder, err = emailHolder(tx, n); err != nil {
				return fmt.Errorf("user %s: %w", s.ID, err)
			}
		}
		log.WarnContext(ctx, "email kept as stored: its normalised form belongs to another account",
			"user_id", s.ID, "holder_id", holder)
		kept++
	}
	log.InfoContext(ctx, "stored emails normalised", "moved", moved, "kept", kept)
	return nil
}

// emailHolder is the id of the account stored under email, or "".
func emailHolder(tx *gorm.DB, email string) (string, error) {
	var ids []string
	if err := tx.Model(&userRow{}).Where("email = ?", email).Limit(1).Pluck("id", &ids).Error; err != nil {
		return "", fmt.Errorf("look up who holds an email: %w", err)
	}
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}
