package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

var ctx = context.Background()

const goodPassword = "correct horse battery"

func register(t *testing.T, f *fixture, email string) user.Profile {
	t.Helper()
	p, err := f.app.Register.Handle(ctx, Register{Email: email, Password: goodPassword, Name: "Alice"})
	if err != nil {
		t.Fatalf("register %s: %v", email, err)
	}
	return p
}

func TestRegisterNormalisesAndHashes(t *testing.T) {
	f := newFixture()
	p := register(t, f, "  Alice@Example.COM ")
	if p.Email != "alice@example.com" || p.Name != "Alice" {
		t.Fatalf("profile = %+v", p)
	}
	stored := f.users.byID[p.ID]
	if stored.PasswordHash != "plain$"+goodPassword {
		t.Fatalf("stored hash = %q, want the hasher's output", stored.PasswordHash)
	}
	_, err := f.app.Register.Handle(ctx, Register{Email: "ALICE@example.com", Password: goodPassword, Name: "Other"})
	if !errors.Is(err, user.ErrEmailTaken) {
		t.Fatalf("second registration with a case variant: err = %v, want ErrEmailTaken", err)
	}
}

func TestRegisterReportsEveryBadField(t *testing.T) {
	f := newFixture()
	_, err := f.app.Register.Handle(ctx, Register{Email: "not-an-email", Password: "short", Name: "  "})
	var verr *user.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want ValidationError", err)
	}
	got := map[string]bool{}
	for _, fe := range verr.Fields {
		got[fe.Field] = true
	}
	for _, want := range []string{"email", "password", "name"} {
		if !got[want] {
			t.Errorf("no error for %s in %v", want, verr.Fields)
		}
	}
	if len(f.users.byID) != 0 {
		t.Fatal("invalid registration was stored")
	}
}

func TestLogin(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")

	tok, err := f.app.Login.Handle(ctx, Login{Email: "ALICE@example.com", Password: goodPassword, IP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.UserID != p.ID || tok.AccessToken != "access-for-"+p.ID || tok.RefreshToken == "" {
		t.Fatalf("tokens = %+v", tok)
	}
	if !tok.AccessExpiresAt.Equal(f.now.Add(15 * time.Minute)) {
		t.Fatalf("access expires at %v", tok.AccessExpiresAt)
	}
	stored, err := f.sessions.ByHash(ctx, session.Hash(tok.RefreshToken))
	if err != nil {
		t.Fatalf("refresh token not stored under its hash: %v", err)
	}
	if strings.Contains(stored.Hash, tok.RefreshToken) {
		t.Fatal("refresh secret stored in clear")
	}

	for name, l := range map[string]Login{
		"wrong password": {Email: "alice@example.com", Password: "wrong password!", IP: "10.0.0.2"},
		"unknown email":  {Email: "bob@example.com", Password: goodPassword, IP: "10.0.0.3"},
		"malformed":      {Email: "bob", Password: goodPassword, IP: "10.0.0.4"},
	} {
		if _, err := f.app.Login.Handle(ctx, l); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: err = %v, want ErrBadCredentials", name, err)
		}
	}
}

// The guard is consulted before the password: once an account is throttled,
// the right password gets the same refusal as a wrong one.
func TestLoginThrottledEvenWithRightPassword(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	for i := range 5 {
		_, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: "wrong password!", IP: "10.0.0." + string(rune('1'+i))})
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	_, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.1.1"})
	var tooMany *TooManyAttemptsError
	if !errors.As(err, &tooMany) {
		t.Fatalf("6th attempt: err = %v, want TooManyAttemptsError", err)
	}
}

// loginAndRefresh registers alice, logs her in and refreshes once: the
// login's token is then spent, the refresh's the family's newest.
func loginAndRefresh(t *testing.T, f *fixture) (first, second Tokens) {
	t.Helper()
	register(t, f, "alice@example.com")
	first, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err = f.app.Refresh.Handle(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	return first, second
}

func TestRefreshRotatesAndReuseRevokesFamily(t *testing.T) {
	f := newFixture()
	first, second := loginAndRefresh(t, f)
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh token not rotated")
	}
	third, err := f.app.Refresh.Handle(ctx, second.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// An attacker replays the first token.
	if _, err := f.app.Refresh.Handle(ctx, first.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("reuse: err = %v, want ErrInvalid", err)
	}
	// The newest token of the family is dead too.
	if _, err := f.app.Refresh.Handle(ctx, third.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("after reuse, newest token: err = %v, want ErrInvalid", err)
	}
	// Another login (another family) is untouched.
	other, _ := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"})
	if _, err := f.app.Refresh.Handle(ctx, other.RefreshToken); err != nil {
		t.Fatalf("other family: %v", err)
	}
}

func TestRefreshExpiryAndUnknown(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	tok, _ := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"})
	if _, err := f.app.Refresh.Handle(ctx, "no-such-token"); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("unknown: %v", err)
	}
	f.now = f.now.Add(31 * 24 * time.Hour)
	if _, err := f.app.Refresh.Handle(ctx, tok.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("expired: %v", err)
	}
}

// leavingSessions is memSessions that, like a database, refuses work whose
// context has ended, and whose ByHash is the last thing the request's
// client waits for: it goes away (leave) once the lookup has answered.
type leavingSessions struct {
	*memSessions
	leave context.CancelFunc
}

func (s leavingSessions) ByHash(ctx context.Context, h string) (session.RefreshToken, error) {
	if err := ctx.Err(); err != nil {
		return session.RefreshToken{}, err
	}
	defer s.leave()
	return s.memSessions.ByHash(ctx, h)
}

func (s leavingSessions) RevokeFamily(ctx context.Context, family string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.memSessions.RevokeFamily(ctx, family, now)
}

// A detected reuse revokes the family even when the request that showed the
// spent token ends right after its lookup: the revocation ran on the
// request's context, so the stolen family outlived the detection.
func TestRefreshReuseRevokesTheFamilyWhenTheCallerLeaves(t *testing.T) {
	f := newFixture()
	first, second := loginAndRefresh(t, f)
	reqCtx, leave := context.WithCancel(ctx)
	refresh := New(Deps{Users: f.users, Profiles: f.cache, Sessions: leavingSessions{f.sessions, leave}, Hasher: plainHasher{},
		Tokens: fakeIssuer{}, Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Refresh
	if _, err := refresh.Handle(reqCtx, first.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("reuse: err = %v, want ErrInvalid", err)
	}
	if _, err := f.app.Refresh.Handle(ctx, second.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("the family's newest token after the reuse: err = %v, want ErrInvalid", err)
	}
}

func TestLogoutRevokesFamily(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	tok, _ := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"})
	next, err := f.app.Refresh.Handle(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.app.Logout.Handle(ctx, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.Refresh.Handle(ctx, next.RefreshToken); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("after logout: %v", err)
	}
	if err := f.app.Logout.Handle(ctx, "unknown"); err != nil {
		t.Fatalf("logout with unknown token: %v", err)
	}
}

func TestProfileCacheReadThroughAndInvalidation(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	got, err := f.app.GetProfile.Handle(ctx, p.ID)
	if err != nil || got.Name != "Alice" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, ok := f.cache.m[p.ID]; !ok {
		t.Fatal("profile not cached after a miss")
	}
	// A cached value is served without the store.
	f.cache.m[p.ID] = user.Profile{ID: p.ID, Name: "from cache"}
	if got, _ := f.app.GetProfile.Handle(ctx, p.ID); got.Name != "from cache" {
		t.Fatalf("cache not used: %+v", got)
	}
	name := "Alice Liddell"
	up, err := f.app.UpdateProfile.Handle(ctx, p.ID, UpdateProfile{Name: &name})
	if err != nil || up.Name != name {
		t.Fatalf("update: %+v %v", up, err)
	}
	if _, ok := f.cache.m[p.ID]; ok {
		t.Fatal("cache not invalidated on change")
	}
	if got, _ := f.app.GetProfile.Handle(ctx, p.ID); got.Name != name {
		t.Fatalf("after update: %+v", got)
	}
	bad := strings.Repeat("x", 101)
	var verr *user.ValidationError
	if _, err := f.app.UpdateProfile.Handle(ctx, p.ID, UpdateProfile{Name: &bad}); !errors.As(err, &verr) || verr.Fields[0].Field != "name" {
		t.Fatalf("long name: %v", err)
	}
	if _, err := f.app.GetProfile.Handle(ctx, "nobody"); !errors.Is(err, user.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// A hash made with outdated settings is replaced at the next good login,
// and only then.
func TestLoginUpgradesOutdatedHash(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	u := f.users.byID[p.ID]
	u.PasswordHash = "old$" + goodPassword
	f.users.byID[p.ID] = u

	if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: "wrong password!", IP: "10.0.0.1"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if got := f.users.byID[p.ID].PasswordHash; got != "old$"+goodPassword {
		t.Fatalf("hash changed by a failed login: %q", got)
	}
	if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: goodPassword, IP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if got := f.users.byID[p.ID].PasswordHash; got != "plain$"+goodPassword {
		t.Fatalf("hash after login = %q, want the current format", got)
	}
}

// countingHasher records how much password text the hasher verified, how
// many hashes it made, and how many argon2id computations (hashes and
// verifications, each one's worth of time and a hashing slot) it did.
type countingHasher struct {
	plainHasher
	mu       sync.Mutex
	verified int
	hashed   int
	ops      int
}

func (c *countingHasher) Verify(ctx context.Context, pw, enc string) (bool, error) {
	c.mu.Lock()
	c.verified += len(pw)
	c.ops++
	c.mu.Unlock()
	return c.plainHasher.Verify(ctx, pw, enc)
}

func (c *countingHasher) Hash(ctx context.Context, pw string) (string, error) {
	c.mu.Lock()
	c.hashed++
	c.ops++
	c.mu.Unlock()
	return c.plainHasher.Hash(ctx, pw)
}

// A sign-up for a registered address (in any of its spellings) is a 409
// without a hash: each such request cost a full argon2id hash (19 MiB, a hashing slot that logins wait for)
// for an answer that could never be a new account.
func TestRegisterTakenEmailIsRefusedBeforeHashing(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	hasher := &countingHasher{}
	reg := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Signups: &ipGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Register
	if _, err := reg.Handle(ctx, Register{Email: " ALICE@example.com", Password: goodPassword, Name: "Mallory"}); !errors.Is(err, user.ErrEmailTaken) {
		t.Fatalf("err = %v, want ErrEmailTaken", err)
	}
	if hasher.hashed != 0 {
		t.Fatalf("%d hashes for a taken address", hasher.hashed)
	}
	if _, err := reg.Handle(ctx, Register{Email: "bob@example.com", Password: goodPassword, Name: "Bob"}); err != nil || hasher.hashed != 1 {
		t.Fatalf("a free address: err = %v, %d hashes, want one", err, hasher.hashed)
	}
}

// A sign-up past its IP's quota is refused before the lookup and the hash,
// and a request validation refuses does not spend the quota.
func TestRegisterPastTheIPQuotaCostsNoHash(t *testing.T) {
	f := newFixture()
	hasher := &countingHasher{}
	reg := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Signups: &ipGuard{n: 1, m: map[string]int{}}, NewID: func() string { return "id" }}).Register
	var verr *user.ValidationError
	if _, err := reg.Handle(ctx, Register{Email: "bad", Password: goodPassword, Name: "A", IP: "10.0.0.1"}); !errors.As(err, &verr) {
		t.Fatalf("invalid sign-up: %v", err)
	}
	if _, err := reg.Handle(ctx, Register{Email: "alice@example.com", Password: goodPassword, Name: "A", IP: "10.0.0.1"}); err != nil {
		t.Fatalf("first sign-up: %v", err)
	}
	var tooMany *TooManyAttemptsError
	if _, err := reg.Handle(ctx, Register{Email: "bob@example.com", Password: goodPassword, Name: "B", IP: "10.0.0.1"}); !errors.As(err, &tooMany) {
		t.Fatalf("second sign-up: %v, want TooManyAttemptsError", err)
	}
	if hasher.hashed != 1 || len(f.users.byID) != 1 {
		t.Fatalf("%d hashes, %d accounts; want the first sign-up's only", hasher.hashed, len(f.users.byID))
	}
}

// A password or address longer than any account can have is refused before
// the guard and the hasher: argon2 over a megabyte of input is a cheap way
// to burn a server's CPU, and a megabyte guard key a way to fill Redis.
func TestLoginRefusesOverlongInputBeforeHashing(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	hasher := &countingHasher{}
	guard := &countGuard{n: 100, m: map[string]int{}}
	login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Guard: guard, NewID: func() string { return "id" }}).Login

	for name, tc := range map[string]struct {
		l     Login
		field string
	}{
		"1 MB password":  {Login{Email: "alice@example.com", Password: strings.Repeat("p", 1<<20), IP: "10.0.0.1"}, "password"},
		"129 characters": {Login{Email: "alice@example.com", Password: strings.Repeat("é", user.MaxPasswordLen+1), IP: "10.0.0.1"}, "password"},
		"1 MB email":     {Login{Email: strings.Repeat("e", 1<<20) + "@example.com", Password: goodPassword, IP: "10.0.0.1"}, "email"},
	} {
		_, err := login.Handle(ctx, tc.l)
		var verr *user.ValidationError
		if !errors.As(err, &verr) || len(verr.Fields) != 1 || verr.Fields[0].Field != tc.field {
			t.Errorf("%s: err = %v, want a validation error on %s", name, err, tc.field)
		}
	}
	if hasher.verified != 0 || len(guard.m) != 0 {
		t.Fatalf("overlong input reached the hasher (%d bytes) or the guard (%d keys)", hasher.verified, len(guard.m))
	}
	// The longest allowed password still gets a real check.
	if _, err := login.Handle(ctx, Login{Email: "alice@example.com", Password: strings.Repeat("é", user.MaxPasswordLen), IP: "10.0.0.1"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("128-character password: %v", err)
	}
	if hasher.verified == 0 {
		t.Fatal("a 128-character password was not verified")
	}
}

// slotHasher, like Argon2, does no work for a request that has ended (it
// would wait for a hashing slot) and records the hashes it checked and how
// many it made.
type slotHasher struct {
	plainHasher
	mu      sync.Mutex
	checked []string
	made    int
}

func (s *slotHasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.made++
	s.mu.Unlock()
	return s.plainHasher.Hash(ctx, pw)
}

func (s *slotHasher) Verify(ctx context.Context, pw, enc string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.checked = append(s.checked, enc)
	s.mu.Unlock()
	return s.plainHasher.Verify(ctx, pw, enc)
}

// An unknown email costs real argon2id work even when the first such login
// was cancelled: the dummy hash it would have made once and for all used to
// stay "" then, and every later unknown email skipped hashing, answering far
// faster than a wrong password for an account that exists. The login after
// the cancelled one makes the hash (that is its work); the next verifies
// against it.
func TestLoginUnknownEmailVerifiesAfterACancelledFirstRequest(t *testing.T) {
	f := newFixture()
	hasher := &slotHasher{}
	login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Login
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := login.Handle(gone, Login{Email: "nobody@example.com", Password: goodPassword, IP: "10.0.0.1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled login: %v", err)
	}
	for range 2 {
		if _, err := login.Handle(ctx, Login{Email: "nobody@example.com", Password: goodPassword, IP: "10.0.0.1"}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("login: %v", err)
		}
	}
	if hasher.made != 1 || len(hasher.checked) != 1 {
		t.Fatalf("made %d hashes and verified against %q, want one of each", hasher.made, hasher.checked)
	}
	if _, err := (plainHasher{}).Verify(ctx, goodPassword, hasher.checked[0]); err != nil {
		t.Fatalf("the unknown email was verified against %q, not a real hash: %v", hasher.checked[0], err)
	}
}

// A login whose context ends while it waits for a hashing slot (every slot
// busy, the caller's deadline short) fails alike for an unknown email and
// for an existing account. The unknown email's verification error was
// dropped, so it answered 401 while an existing account answered 504: with
// the slots kept busy, the status told who has an account.
func TestLoginEndedWhileHashingFailsAlikeForAnUnknownEmail(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: &slotHasher{}, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Login
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for _, email := range []string{"alice@example.com", "nobody@example.com"} {
		_, err := login.Handle(gone, Login{Email: email, Password: "wrong password!", IP: "10.0.0.1"})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: err = %v, want the context's error", email, err)
		}
	}
}

// busyHasher is Argon2 with every hashing slot taken: a hash or a
// verification waits until free is closed, or gives up when its context
// ends. waiting hears of each one that starts to wait.
type busyHasher struct {
	plainHasher
	free    chan struct{}
	waiting chan struct{}
}

func (b *busyHasher) wait(ctx context.Context) error {
	b.waiting <- struct{}{}
	select {
	case <-b.free:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *busyHasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := b.wait(ctx); err != nil {
		return "", err
	}
	return b.plainHasher.Hash(ctx, pw)
}

func (b *busyHasher) Verify(ctx context.Context, pw, enc string) (bool, error) {
	if err := b.wait(ctx); err != nil {
		return false, err
	}
	return b.plainHasher.Verify(ctx, pw, enc)
}

// While the first unknown email of a process waits for a hashing slot,
// another unknown email whose request has ended answers at once, as an
// existing account does (503, or 504 past its deadline). The dummy hash was
// made under a lock held across the wait, so every unknown email queued
// behind it, past its own deadline, until a slot came free.
func TestLoginUnknownEmailDoesNotQueueBehindTheFirstDummyHash(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	hasher := &busyHasher{free: make(chan struct{}), waiting: make(chan struct{}, 16)}
	free := sync.OnceFunc(func() { close(hasher.free) })
	t.Cleanup(free)
	login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Login

	first := make(chan error, 1)
	go func() {
		_, err := login.Handle(ctx, Login{Email: "nobody@example.com", Password: "wrong password!", IP: "10.0.0.1"})
		first <- err
	}()
	<-hasher.waiting // the first unknown email waits for a slot

	gone, cancel := context.WithCancel(ctx)
	cancel()
	for _, email := range []string{"alice@example.com", "someone@example.com"} {
		ended := make(chan error, 1)
		go func() {
			_, err := login.Handle(gone, Login{Email: email, Password: "wrong password!", IP: "10.0.0.2"})
			ended <- err
		}()
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s, request ended: err = %v, want the context's error", email, err)
			}
		case <-time.After(time.Minute): // a hang detector, not a timing goal
			t.Fatalf("%s: a login whose request ended still waits a minute later, behind the first unknown email's hash", email)
		}
	}
	free()
	if err := <-first; !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("the first unknown email: err = %v, want ErrBadCredentials", err)
	}
}

// The first unknown email after a start costs what a wrong password for an
// existing account costs: as many argon2id computations (one; two when the
// typed password is not in NFKC form). It made the dummy hash and then
// verified against it, twice an account's work, so the first unknown emails
// answered measurably later than existing ones.
func TestLoginUnknownEmailCostsWhatAnAccountCosts(t *testing.T) {
	for name, password := range map[string]string{"NFKC": "wrong password!", "decomposed": "wrong passwo\u0308rd!"} {
		t.Run(name, func(t *testing.T) {
			f := newFixture()
			register(t, f, "alice@example.com")
			hasher := &countingHasher{}
			login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
				Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Login
			ops := func(email string) int {
				t.Helper()
				before := hasher.ops
				if _, err := login.Handle(ctx, Login{Email: email, Password: password, IP: "10.0.0.1"}); !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("%s: err = %v, want ErrBadCredentials", email, err)
				}
				return hasher.ops - before
			}
			firstUnknown, account, laterUnknown := ops("nobody@example.com"), ops("alice@example.com"), ops("someone@example.com")
			if firstUnknown != account || laterUnknown != account {
				t.Fatalf("argon2id computations: first unknown email %d, existing account %d, later unknown email %d; want all equal",
					firstUnknown, account, laterUnknown)
			}
		})
	}
}

// pausingUsers holds GetProfile between its read of the store and its fill
// of the cache, once.
type pausingUsers struct {
	*memUsers
	read, resume chan struct{}
}

func (p *pausingUsers) ByID(ctx context.Context, id string) (user.User, error) {
	u, err := p.memUsers.ByID(ctx, id)
	if p.read != nil {
		close(p.read)
		<-p.resume
		p.read = nil
	}
	return u, err
}

// A read that missed the cache and read the old profile before an update
// does not cache it after the update's invalidation: GET /users/me used to
// answer the old name for the whole cache TTL after a PATCH.
func TestGetProfileFillDoesNotOutliveAnUpdate(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	users := &pausingUsers{memUsers: f.users, read: make(chan struct{}), resume: make(chan struct{})}
	a := New(Deps{Users: users, Profiles: f.cache, Sessions: f.sessions, Hasher: plainHasher{}, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 5, m: map[string]int{}}, NewID: func() string { return "x" }, Now: func() time.Time { return f.now }})
	read := users.read
	done := make(chan error, 1)
	go func() { _, err := a.GetProfile.Handle(ctx, p.ID); done <- err }()
	<-read // the old profile is read, not yet cached
	name := "Alice Liddell"
	if _, err := a.UpdateProfile.Handle(ctx, p.ID, UpdateProfile{Name: &name}); err != nil {
		t.Fatal(err)
	}
	close(users.resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := a.GetProfile.Handle(ctx, p.ID)
	if err != nil || got.Name != name {
		t.Fatalf("GET after the update: %+v %v, want name %q", got, err, name)
	}
}

// failingCache answers Get with err, once, and the generation its memCache
// holds: a read that failed, or one that found a value it could not decode.
type failingCache struct {
	*memCache
	err error
}

func (c *failingCache) Get(ctx context.Context, id string) (user.Profile, string, bool, error) {
	_, gen, _, _ := c.memCache.Get(ctx, id)
	err := c.err
	c.err = nil
	return user.Profile{}, gen, false, err
}

// unreadable is the error a cache returns for a value it cannot decode.
type unreadable struct{}

func (unreadable) Error() string { return "profile cache decode: invalid character" }
func (unreadable) Miss() bool    { return true }

// An unreadable cached value is filled over, in the generation its Get
// returned, and reported once; a failed read fills nothing (it has no
// generation to fill in). The unreadable value used to be treated as a
// failed read and kept until its TTL ran out.
func TestGetProfileFillsOverAnUnreadableValue(t *testing.T) {
	for name, tc := range map[string]struct {
		err    error
		filled bool
		log    string
	}{
		"unreadable value": {fmt.Errorf("wrapped: %w", unreadable{}), true, "profile cache value unreadable"},
		"failed read":      {errors.New("profile cache get: connection refused"), false, "profile cache read failed"},
	} {
		f := newFixture()
		p := register(t, f, "alice@example.com")
		renamed := "Alice Liddell"
		if _, err := f.app.UpdateProfile.Handle(ctx, p.ID, UpdateProfile{Name: &renamed}); err != nil { // generation 1
			t.Fatal(err)
		}
		var logs strings.Builder
		a := New(Deps{Users: f.users, Profiles: &failingCache{memCache: f.cache, err: tc.err}, Sessions: f.sessions,
			Hasher: plainHasher{}, Tokens: fakeIssuer{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if got, err := a.GetProfile.Handle(ctx, p.ID); err != nil || got.Name != renamed {
			t.Fatalf("%s: %+v %v", name, got, err)
		}
		if _, filled := f.cache.m[p.ID]; filled != tc.filled {
			t.Errorf("%s: filled = %v, want %v", name, filled, tc.filled)
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), tc.log) {
			t.Errorf("%s: logged %q, want one warning %q", name, logs.String(), tc.log)
		}
	}
}
