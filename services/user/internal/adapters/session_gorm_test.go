package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

func issue(t *testing.T, id, family string, now time.Time) session.RefreshToken {
	t.Helper()
	tok, _, err := session.Issue(id, family, "u1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sessionRepo is a SessionGorm on db, with the account u1 its tokens belong to.
func sessionRepo(t *testing.T, db *gorm.DB) *adapters.SessionGorm {
	t.Helper()
	if err := adapters.NewUserGorm(db).Add(t.Context(), newUser("u1", "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	return adapters.NewSessionGorm(db)
}

func TestSessionGormRotateOnce(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
		first := issue(t, "t1", "", now)
		if err := repo.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		got, err := repo.ByHash(ctx, first.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "t1" || got.FamilyID != "t1" || got.UserID != "u1" || !got.ExpiresAt.Equal(first.ExpiresAt) || got.UsedAt != nil || got.RevokedAt != nil {
			t.Fatalf("ByHash = %+v", got)
		}
		if _, err := repo.ByHash(ctx, session.Hash("nope")); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}

		second := issue(t, "t2", "t1", now)
		if err := repo.Rotate(ctx, first, second, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		spent, _ := repo.ByHash(ctx, first.Hash)
		if spent.UsedAt == nil || !spent.UsedAt.Equal(now.Add(time.Minute)) {
			t.Fatalf("old token not marked used: %+v", spent)
		}
		if !errors.Is(spent.Check(now.Add(2*time.Minute)), session.ErrSpent) {
			t.Fatal("stored token does not read as spent")
		}
		third := issue(t, "t3", "t1", now)
		if err := repo.Rotate(ctx, first, third, now.Add(2*time.Minute)); !errors.Is(err, session.ErrSpent) {
			t.Fatalf("second rotation of one token: err = %v, want ErrSpent", err)
		}
		if _, err := repo.ByHash(ctx, third.Hash); !errors.Is(err, session.ErrNotFound) {
			t.Fatal("losing rotation stored its successor")
		}
	})
}

// Concurrent refreshes with one token: exactly one rotation wins.
func TestSessionGormConcurrentRotationOneWinner(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		now := time.Now().UTC()
		first := issue(t, "t1", "", now)
		if err := repo.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		var won, spent atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				err := repo.Rotate(ctx, first, issue(t, fmt.Sprintf("n%d", i), "t1", now), now)
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, session.ErrSpent):
					spent.Add(1)
				default:
					t.Errorf("unexpected: %v", err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || spent.Load() != 7 {
			t.Fatalf("won=%d spent=%d", won.Load(), spent.Load())
		}
	})
}

func TestSessionGormRevokeFamily(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		now := time.Now().UTC()
		a1, a2, b1 := issue(t, "a1", "", now), issue(t, "a2", "a1", now), issue(t, "b1", "", now)
		for _, tok := range []session.RefreshToken{a1, a2, b1} {
			if err := repo.Create(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if err := repo.RevokeFamily(ctx, "a1", now); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []session.RefreshToken{a1, a2} {
			got, _ := repo.ByHash(ctx, tok.Hash)
			if got.RevokedAt == nil || !errors.Is(got.Check(now), session.ErrInvalid) {
				t.Fatalf("%s not revoked: %+v", tok.ID, got)
			}
		}
		if got, _ := repo.ByHash(ctx, b1.Hash); got.RevokedAt != nil {
			t.Fatal("another family was revoked")
		}
		// A token that cannot be rotated after revocation, and is not
		// reported spent: it never was.
		if err := repo.Rotate(ctx, a2, issue(t, "a3", "a1", now), now); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("rotate revoked: %v, want ErrInvalid", err)
		}
	})
}

// RevokeUser (a password change) revokes every family of the user, rotated
// tokens included, and no other user's token.
func TestSessionGormRevokeUser(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		if err := adapters.NewUserGorm(db).Add(ctx, newUser("u2", "bob@example.com")); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		a1, a2, b1 := issue(t, "a1", "", now), issue(t, "a2", "a1", now), issue(t, "b1", "", now)
		other, _, err := session.Issue("c1", "", "u2", now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []session.RefreshToken{a1, a2, b1, other} {
			if err := repo.Create(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if err := repo.RevokeUser(ctx, "u1", now); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []session.RefreshToken{a1, a2, b1} {
			if got, _ := repo.ByHash(ctx, tok.Hash); !errors.Is(got.Check(now), session.ErrInvalid) {
				t.Errorf("%s not revoked: %+v", tok.ID, got)
			}
		}
		if got, _ := repo.ByHash(ctx, other.Hash); got.RevokedAt != nil {
			t.Error("another user's token was revoked")
		}
		if err := repo.RevokeUser(ctx, "u1", now); err != nil {
			t.Fatalf("revoking again: %v", err)
		}
	})
}

// A revocation (logout, or a detected reuse) that comes while a rotation of
// the family is between its statements and its commit revokes the successor
// the rotation stores, too. Under READ COMMITTED the revocation's UPDATE used
// to wait for the rotation's lock on the spent token and then revoke only the
// rows it had seen, leaving the successor alive. The rotation is held there by
// a transaction that inserted the successor's id first, which Rotate's INSERT
// waits for; it is let go once the revocation waits too. PostgreSQL only:
// SQLite runs the two one after the other.
func TestSessionGormRevokeFamilyWaitsForRotation(t *testing.T) {
	// RevokeUser (a password change) locks each of the user's families
	// the same way, and must revoke the successor alike.
	for name, revoke := range map[string]func(context.Context, *gorm.DB, time.Time) error{
		"RevokeFamily": func(ctx context.Context, db *gorm.DB, now time.Time) error {
			return adapters.NewSessionGorm(db).RevokeFamily(ctx, "t1", now)
		},
		"RevokeUser": func(ctx context.Context, db *gorm.DB, now time.Time) error {
			return adapters.NewSessionGorm(db).RevokeUser(ctx, "u1", now)
		},
		// ReplacePassword does it inside a password change, holding the
		// account's row (its hash's UPDATE, FOR NO KEY UPDATE), which the
		// rotation's INSERT then locks FOR KEY SHARE for its foreign key.
		// The two locks do not conflict; if they did, the change and the
		// rotation would deadlock here and one of them fail.
		"ReplacePassword": func(ctx context.Context, db *gorm.DB, now time.Time) error {
			u, err := adapters.NewUserGorm(db).ByID(ctx, "u1")
			if err != nil {
				return err
			}
			return adapters.NewCredentialsGorm(db).ReplacePassword(ctx, "u1", u.PasswordHash, "$argon2id$new", now)
		},
	} {
		t.Run(name, func(t *testing.T) { revokeDuringRotation(t, revoke) })
	}
}

func revokeDuringRotation(t *testing.T, revoke func(context.Context, *gorm.DB, time.Time) error) {
	db, err := database.Open(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Close(db) })
	ctx := t.Context()
	if err := migrateAll(ctx, db); err != nil {
		t.Fatal(err)
	}
	repo := sessionRepo(t, db)
	now := time.Now().UTC()
	first, second := issue(t, "t1", "", now), issue(t, "t2", "t1", now)
	if err := repo.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	hold := db.Begin()
	t.Cleanup(func() { hold.Rollback() }) // a no-op once rolled back below
	if err := hold.Exec(`INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at)
		VALUES (?, 'other', 'u1', 'hold', ?, ?)`, second.ID, now, now).Error; err != nil {
		t.Fatal(err)
	}
	rotated, revoked := make(chan error, 1), make(chan error, 1)
	go func() { rotated <- repo.Rotate(ctx, first, second, now) }()
	waitForLockWaits(t, db, 1, "the rotation's INSERT waiting for the held id")
	go func() { revoked <- revoke(ctx, db, now) }()
	waitForLockWaits(t, db, 2, "the revocation waiting for the rotation")
	if err := hold.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-rotated; err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := <-revoked; err != nil {
		t.Fatalf("revoke: %v", err)
	}
	got, err := repo.ByHash(ctx, second.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt == nil {
		t.Fatalf("the family was revoked, yet the token its rotation stored was not: %+v", got)
	}
}

// waitForLockWaits waits until n statements of db's database wait for a lock.
func waitForLockWaits(t *testing.T, db *gorm.DB, n int, what string) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, what, func() bool {
		var waiting int
		db.Raw(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return waiting == n
	})
}

// Expired tokens are deleted, at most limit per call; live ones stay.
func TestSessionGormDeleteExpired(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
		for i, ago := range []time.Duration{time.Second, time.Minute, time.Hour} { // expired that long ago
			if err := repo.Create(ctx, issue(t, fmt.Sprintf("old%d", i), "", now.Add(-time.Hour-ago))); err != nil {
				t.Fatal(err)
			}
		}
		live := issue(t, "live", "", now.Add(-time.Minute)) // expires in 59 minutes
		edge := issue(t, "edge", "", now.Add(-time.Hour))   // expires now: Check refuses it, not yet past
		for _, tok := range []session.RefreshToken{live, edge} {
			if err := repo.Create(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		count := func() (n int64) {
			if err := db.Table("refresh_tokens").Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n, err := repo.DeleteExpired(ctx, now, 2); err != nil || n != 2 || count() != 3 {
			t.Fatalf("first batch of 2: deleted %d (err %v), %d rows left; want 2 and 3", n, err, count())
		}
		if n, err := repo.DeleteExpired(ctx, now, 2); err != nil || n != 1 || count() != 2 {
			t.Fatalf("second batch: deleted %d (err %v), %d rows left; want 1 and 2", n, err, count())
		}
		if n, err := repo.DeleteExpired(ctx, now, 2); err != nil || n != 0 {
			t.Fatalf("nothing left to delete: deleted %d (err %v)", n, err)
		}
		for _, tok := range []session.RefreshToken{live, edge} {
			if _, err := repo.ByHash(ctx, tok.Hash); err != nil {
				t.Fatalf("%s: %v", tok.ID, err)
			}
		}
	})
}
