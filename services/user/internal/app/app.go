// Package app holds the user service's use cases, one per file. Each speaks
// only to domain types and to the small interfaces declared here and in the
// domain, so the HTTP port and the tests drive the same code.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// Application bundles the use cases for the ports.
type Application struct {
	Register       RegisterHandler
	Login          LoginHandler
	Refresh        RefreshHandler
	Logout         LogoutHandler
	GetProfile     GetProfileHandler
	UpdateProfile  UpdateProfileHandler
	ChangePassword ChangePasswordHandler
}

// TokenIssuer signs access tokens (pkg/auth's Signer in production).
type TokenIssuer interface {
	Sign(sub string, ttl time.Duration) (string, error)
}

// LoginGuard spends one login attempt for a client IP and an account before
// the password is checked, and refuses once either has used its quota.
// Counting attempts rather than only failures is deliberate: the answer for
// a throttled key is the same whether the password was right or wrong, so a
// guesser learns nothing past the limit, and no argon2 work is done for it.
type LoginGuard interface {
	// Admit returns a *TooManyAttemptsError when the attempt must be refused.
	Admit(ctx context.Context, account, ip string) error
}

// SignupGuard spends one sign-up for a client IP and refuses once the IP has
// used its quota. Each sign-up costs an argon2id hash (a hashing slot logins
// wait for) and an account; without a bound one client could create them as
// fast as the gateway's general per-IP rate lets it. A 409 counts too: it
// tells whether an address is registered, which login is careful never to.
type SignupGuard interface {
	// Admit returns a *TooManyAttemptsError when the sign-up must be refused.
	Admit(ctx context.Context, ip string) error
}

// CredentialStore changes a password. Its one method is both halves of the
// change as one: stored apart, a revocation failing after the new hash left
// the sessions alive behind a 5xx, and the client's retry failed on a current
// password that had changed.
type CredentialStore interface {
	// ReplacePassword stores hash over old, under user.Repository's
	// SetPasswordHash rule (user.ErrHashChanged if another writer replaced
	// it meanwhile), and revokes every refresh token of the account, as
	// session.Repository's RevokeFamily does a family's: both or neither.
	ReplacePassword(ctx context.Context, userID, old, hash string, now time.Time) error
}

// Deps are what the use cases need from the outside world.
type Deps struct {
	Users    user.Repository
	Profiles user.ProfileCache
	Sessions session.Repository
	// Credentials changes passwords (ChangePasswordHandler only).
	Credentials CredentialStore
	Hasher      user.Hasher
	Tokens      TokenIssuer
	Guard       LoginGuard
	Signups     SignupGuard
	Logger      *slog.Logger
	NewID       func() string
	Now         func() time.Time
	// AccessTTL is the access token lifetime (default 15m), RefreshTTL the
	// refresh token lifetime (default 30 days).
	AccessTTL, RefreshTTL time.Duration
}

// New wires the use cases.
func New(d Deps) Application {
	if d.Now == nil {
		d.Now = time.Now
	}
	// Timestamps are kept to the microsecond, what PostgreSQL stores: with
	// the clock's nanoseconds, a sign-up or a PATCH answered another
	// created_at or updated_at than every later read of the same account.
	now := d.Now
	d.Now = func() time.Time { return now().Truncate(time.Microsecond) }
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.AccessTTL == 0 {
		d.AccessTTL = 15 * time.Minute
	}
	if d.RefreshTTL == 0 {
		d.RefreshTTL = 30 * 24 * time.Hour
	}
	issuer := tokenIssuer{d: d}
	login := LoginHandler{d: d, issue: issuer, dummy: new(dummyHash)}
	return Application{
		Register:       RegisterHandler{d: d},
		Login:          login,
		Refresh:        RefreshHandler{d: d, issue: issuer},
		Logout:         LogoutHandler{d: d},
		GetProfile:     GetProfileHandler{d: d},
		UpdateProfile:  UpdateProfileHandler{d: d},
		ChangePassword: ChangePasswordHandler{login: login},
	}
}
