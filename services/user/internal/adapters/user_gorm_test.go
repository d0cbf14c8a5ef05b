package adapters_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

func newUser(id, email string) user.User {
	now := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	return user.User{ID: id, Email: email, Name: "Alice", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		CreatedAt: now, UpdatedAt: now}
}

func TestUserGormRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		ctx := t.Context()
		u := newUser("u1", "alice@example.com")
		if err := repo.Add(ctx, u); err != nil {
			t.Fatal(err)
		}
		byID, err := repo.ByID(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if byID != u {
			t.Fatalf("ByID = %+v\nwant   %+v", byID, u)
		}
		byEmail, err := repo.ByEmail(ctx, "alice@example.com")
		if err != nil || byEmail.ID != "u1" {
			t.Fatalf("ByEmail = %+v, %v", byEmail, err)
		}
		if _, err := repo.ByID(ctx, "nobody"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
		if _, err := repo.ByEmail(ctx, "bob@example.com"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("unknown email: %v", err)
		}
	})
}

// Registering writes exactly one user.registered outbox row, with the
// conventions' payload and no password material; a refused duplicate writes
// none.
func TestUserGormAddWritesRegisteredEvent(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		ctx := t.Context()
		u := newUser("u1", "alice@example.com")
		if err := repo.Add(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := repo.Add(ctx, newUser("u2", "alice@example.com")); !errors.Is(err, user.ErrEmailTaken) {
			t.Fatalf("duplicate email: err = %v, want ErrEmailTaken", err)
		}
		var rows []outbox.Message
		if err := db.Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("outbox rows = %d, want 1", len(rows))
		}
		m := rows[0]
		if m.Topic != "shanhai.users" || m.Key != "u1" || m.EventType != "user.registered" || m.SentAt != nil {
			t.Fatalf("outbox row = %+v", m)
		}
		var data map[string]any
		if err := json.Unmarshal(m.Payload, &data); err != nil {
			t.Fatal(err)
		}
		if len(data) != 2 || data["user_id"] != "u1" || data["email"] != "alice@example.com" {
			t.Fatalf("payload = %s", m.Payload)
		}
		if strings.Contains(string(m.Payload)+m.Headers, "argon2") {
			t.Fatal("password hash in the event")
		}
		var headers map[string]string
		if err := json.Unmarshal([]byte(m.Headers), &headers); err != nil {
			t.Fatal(err)
		}
		if headers["ce_type"] != "user.registered" || headers["ce_source"] != "/shanhai/user" || headers["ce_subject"] != "u1" {
			t.Fatalf("headers = %v", headers)
		}
		if _, err := repo.ByID(ctx, "u2"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("refused duplicate was stored: %v", err)
		}
	})
}

// Many sign-ups racing for one address: the unique index lets one through.
func TestUserGormConcurrentSignUpsOneWinner(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, taken := 0, 0
		for i := range 8 {
			wg.Go(func() {
				err := repo.Add(t.Context(), newUser(fmt.Sprintf("u%d", i), "race@example.com"))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, user.ErrEmailTaken):
					taken++
				default:
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
		wg.Wait()
		if won != 1 || taken != 7 {
			t.Fatalf("won=%d taken=%d, want 1 and 7", won, taken)
		}
	})
}

func TestUserGormUpdate(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		ctx := t.Context()
		u := newUser("u1", "alice@example.com")
		if err := repo.Add(ctx, u); err != nil {
			t.Fatal(err)
		}
		later := u.UpdatedAt.Add(time.Hour)
		got, err := repo.Update(ctx, "u1", func(u *user.User) error { return u.Rename("Alice L", later) })
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "Alice L" || !got.UpdatedAt.Equal(later) || got.PasswordHash != u.PasswordHash {
			t.Fatalf("update returned %+v", got)
		}
		stored, _ := repo.ByID(ctx, "u1")
		if stored.Name != "Alice L" || !stored.UpdatedAt.Equal(later) || !stored.CreatedAt.Equal(u.CreatedAt) {
			t.Fatalf("stored %+v", stored)
		}
		// fn may not change the hash through Update.
		if _, err := repo.Update(ctx, "u1", func(u *user.User) error { u.PasswordHash = "x"; return nil }); err != nil {
			t.Fatal(err)
		}
		if s, _ := repo.ByID(ctx, "u1"); s.PasswordHash != u.PasswordHash {
			t.Fatal("Update wrote the password hash")
		}
		// A rule failure in fn writes nothing.
		boom := errors.New("rule")
		if _, err := repo.Update(ctx, "u1", func(u *user.User) error { u.Name = "changed"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if s, _ := repo.ByID(ctx, "u1"); s.Name != "Alice L" {
			t.Fatalf("failed update was written: %+v", s)
		}
		if _, err := repo.Update(ctx, "nobody", func(*user.User) error { return nil }); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
}

func TestUserGormSetPasswordHash(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		ctx := t.Context()
		u := newUser("u1", "alice@example.com")
		if err := repo.Add(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := repo.SetPasswordHash(ctx, "u1", u.PasswordHash, "$argon2id$new"); err != nil {
			t.Fatal(err)
		}
		got, _ := repo.ByID(ctx, "u1")
		if got.PasswordHash != "$argon2id$new" || got.Name != u.Name || got.Email != u.Email {
			t.Fatalf("after SetPasswordHash: %+v", got)
		}
		// Over a hash replaced meanwhile (the old one read before): refused,
		// the stored one kept.
		if err := repo.SetPasswordHash(ctx, "u1", u.PasswordHash, "$argon2id$stale"); !errors.Is(err, user.ErrHashChanged) {
			t.Fatalf("over a replaced hash: %v", err)
		}
		if got, _ := repo.ByID(ctx, "u1"); got.PasswordHash != "$argon2id$new" {
			t.Fatalf("a stale write replaced the hash: %q", got.PasswordHash)
		}
		if err := repo.SetPasswordHash(ctx, "nobody", "x", "y"); !errors.Is(err, user.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	})
}

// EmailTaken finds an address stored as it is and one stored with an
// invisible character that reads as it (an older release's), which ByEmail,
// a login's look-up, does not; InvisibleEmails lists the latter. Both use
// an index: the partial one on email_visible, not a scan of users.
func TestUserGormEmailTakenSeesLookAlikes(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		repo := adapters.NewUserGorm(db)
		ctx := t.Context()
		for _, u := range []user.User{newUser("u1", "alice@example.com"), newUser("u2", "b\u200bob@example.com"),
			newUser("u3", "\u2060carol@example.com")} {
			if err := repo.Add(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		for email, want := range map[string]bool{"alice@example.com": true, "bob@example.com": true,
			"carol@example.com": true, "dave@example.com": false, "b\u200bob@example.com": true} {
			if taken, err := repo.EmailTaken(ctx, email); err != nil || taken != want {
				t.Errorf("EmailTaken(%+q) = %v, %v; want %v", email, taken, err, want)
			}
		}
		if _, err := repo.ByEmail(ctx, "bob@example.com"); !errors.Is(err, user.ErrNotFound) {
			t.Errorf("ByEmail of the look-alike: %v, want ErrNotFound (a login is not for the other account)", err)
		}
		if ids, err := repo.InvisibleEmails(ctx); err != nil || strings.Join(ids, ",") != "u2,u3" {
			t.Errorf("InvisibleEmails = %v, %v; want [u2 u3]", ids, err)
		}
		for _, q := range []string{"SELECT id FROM users WHERE email = 'x' OR email_visible = 'x' LIMIT 1",
			"SELECT id FROM users WHERE email_visible IS NOT NULL"} {
			if plan := explain(t, db, q); !strings.Contains(plan, "users_email_visible") {
				t.Errorf("%s does not use the partial index users_email_visible:\n%s", q, plan)
			}
		}
	})
}

// explain is the query plan of query, one line per step.
func explain(t *testing.T, db *gorm.DB, query string) string {
	t.Helper()
	var lines []string
	switch db.Dialector.Name() {
	case "postgres":
		// So few rows that a scan would win; the plan wanted is the one a
		// large table gets.
		if err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
				return err
			}
			return tx.Raw("EXPLAIN " + query).Scan(&lines).Error
		}); err != nil {
			t.Fatal(err)
		}
	default:
		var rows []struct {
			ID, Parent, Notused int
			Detail              string
		}
		if err := db.Raw("EXPLAIN QUERY PLAN " + query).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			lines = append(lines, r.Detail)
		}
	}
	return strings.Join(lines, "\n")
}
