package app

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// hookHasher runs hook once, inside the first Hash of trigger, before that
// hash is returned: a writer that commits while a login is hashing.
type hookHasher struct {
	plainHasher
	trigger string
	once    sync.Once
	hook    func()
}

func (h *hookHasher) Hash(ctx context.Context, pw string) (string, error) {
	if pw == h.trigger {
		h.once.Do(h.hook)
	}
	return h.plainHasher.Hash(ctx, pw)
}

// TestPasswordChangeIsNotUndoneByALoginsRehash: a login that upgrades an
// outdated hash of the old password, and a password change that commits
// while that login hashes, leave the new password. The rehash wrote the old
// password's hash over the new one unconditionally: the change answered 204
// and ended every session, then the old password logged in again and the
// new one did not.
func TestPasswordChangeIsNotUndoneByALoginsRehash(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	u := f.users.byID[p.ID]
	u.PasswordHash = "old$" + goodPassword // NeedsRehash: the login upgrades it
	f.users.byID[p.ID] = u
	const next = "a brand new passphrase 7"
	hasher := &hookHasher{trigger: goodPassword}
	a := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Credentials: f.credentials, Hasher: hasher, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 5, m: map[string]int{}}, Signups: &ipGuard{n: 100, m: map[string]int{}},
		NewID: func() string { return "id-x" }, Now: func() time.Time { return f.now }})
	hasher.hook = func() {
		if err := a.ChangePassword.Handle(ctx, ChangePassword{UserID: p.ID, Current: goodPassword, New: next, IP: "10.0.0.2"}); err != nil {
			t.Errorf("change during the login's rehash: %v", err)
		}
	}
	if _, err := a.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if got := f.users.byID[p.ID].PasswordHash; got != "plain$"+next {
		t.Fatalf("hash after the change and the login's rehash = %q; want the new password's", got)
	}
}

// TestPasswordChangeThatFailsChangesNothing: when the revocation fails the
// change is an error and the old password and its sessions stay, so the
// client's retry with the same current password succeeds (the store's
// transaction is CredentialsGorm's, tested on both dialects).
func TestPasswordChangeThatFailsChangesNothing(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	tok, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	const next = "a brand new passphrase 7"
	change := ChangePassword{UserID: p.ID, Current: goodPassword, New: next, IP: "10.0.0.1"}
	f.credentials.revokeErr = errors.New("injected")
	if err := f.app.ChangePassword.Handle(ctx, change); err == nil {
		t.Fatal("change with the revocation failing succeeded")
	}
	if got := f.users.byID[p.ID].PasswordHash; got != "plain$"+goodPassword {
		t.Fatalf("hash after a failed change = %q; want the old password's", got)
	}
	if _, err := f.app.Refresh.Handle(ctx, tok.RefreshToken); err != nil {
		t.Fatalf("refresh after a failed change: %v", err)
	}
	f.credentials.revokeErr = nil
	if err := f.app.ChangePassword.Handle(ctx, change); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := f.users.byID[p.ID].PasswordHash; got != "plain$"+next {
		t.Fatalf("hash after the retry = %q", got)
	}
}
