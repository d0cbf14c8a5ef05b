package adapters_test

import (
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// A password change whose revocation fails stores nothing: the old hash and
// the sessions stay, so the client's retry with the same current password
// succeeds. Stored apart, the new hash stayed behind the 5xx, the sessions
// lived on, and the retry's current password was no longer current.
func TestCredentialsGormReplacePasswordIsAllOrNothing(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		users := adapters.NewUserGorm(db)
		now := time.Now().UTC()
		tok := issue(t, "a1", "", now)
		if err := repo.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		u, err := users.ByID(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		injected := errors.New("injected: refresh tokens unwritable")
		const name = "test:fail_revocation"
		err = db.Callback().Update().Before("gorm:update").Register(name, func(tx *gorm.DB) {
			if tx.Statement.Table == "refresh_tokens" {
				_ = tx.AddError(injected)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		creds := adapters.NewCredentialsGorm(db)
		if err := creds.ReplacePassword(ctx, "u1", u.PasswordHash, "$argon2id$new", now); !errors.Is(err, injected) {
			t.Fatalf("change with the revocation failing: err = %v, want the injected one", err)
		}
		if got, _ := users.ByID(ctx, "u1"); got.PasswordHash != u.PasswordHash {
			t.Fatalf("hash after a failed change = %q; want the old one", got.PasswordHash)
		}
		if got, _ := repo.ByHash(ctx, tok.Hash); got.RevokedAt != nil {
			t.Fatal("token revoked by a failed change")
		}

		if err := db.Callback().Update().Remove(name); err != nil {
			t.Fatal(err)
		}
		if err := creds.ReplacePassword(ctx, "u1", u.PasswordHash, "$argon2id$new", now); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if got, _ := users.ByID(ctx, "u1"); got.PasswordHash != "$argon2id$new" {
			t.Fatalf("hash after the retry = %q", got.PasswordHash)
		}
		if got, _ := repo.ByHash(ctx, tok.Hash); !errors.Is(got.Check(now), session.ErrInvalid) {
			t.Fatalf("token not revoked by the change: %+v", got)
		}

		// A change over a hash replaced meanwhile (here, by the change
		// above) is user.ErrHashChanged inside the transaction too: it
		// stores nothing and revokes nothing, not the session opened with
		// the password now current.
		later := issue(t, "b1", "", now)
		if err := repo.Create(ctx, later); err != nil {
			t.Fatal(err)
		}
		if err := creds.ReplacePassword(ctx, "u1", u.PasswordHash, "$argon2id$stale", now); !errors.Is(err, user.ErrHashChanged) {
			t.Fatalf("change over a replaced hash: err = %v, want user.ErrHashChanged", err)
		}
		if got, _ := users.ByID(ctx, "u1"); got.PasswordHash != "$argon2id$new" {
			t.Fatalf("hash after a change over a replaced one = %q", got.PasswordHash)
		}
		if got, _ := repo.ByHash(ctx, later.Hash); got.RevokedAt != nil {
			t.Fatal("a change over a replaced hash revoked a session")
		}
	})
}
