package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// Login is a sign-in request; IP is the client address the port saw.
type Login struct {
	Email    string
	Password string
	IP       string
}

// Tokens is what a successful login or refresh hands the client.
type Tokens struct {
	UserID           string
	AccessToken      string
	AccessExpiresAt  time.Time
	RefreshToken     string
	RefreshExpiresAt time.Time
}

// LoginHandler exchanges email and password for tokens.
type LoginHandler struct {
	d     Deps
	issue tokenIssuer
	dummy *dummyHash
}

// Handle admits the attempt through the guard, checks the password in
// constant work whether or not the account exists, and starts a new refresh
// token family.
func (h LoginHandler) Handle(ctx context.Context, l Login) (Tokens, error) {
	// Input no account can have is refused before the guard and the hasher:
	// it cannot succeed, so there is nothing to throttle, and neither a
	// megabyte password (hashing reads all of it) nor a megabyte address (a
	// guard key in Redis) should cost more than reading the request.
	var verr user.ValidationError
	// The bound allows for what normalising may still shorten (combining
	// accents composed, full-width forms narrowed); NormalizeEmail then
	// applies the exact one.
	if len(strings.TrimSpace(l.Email)) > user.MaxTypedEmailBytes {
		verr.Fields = append(verr.Fields, user.FieldError{Field: "email", Detail: "must be at most 254 bytes"})
	}
	// No account has a password too long in both forms: hashes are of the
	// normalised form since it was introduced, of the typed one before.
	password := user.NormalizePassword(l.Password)
	if fe := user.CheckPasswordLength(password); fe != nil && user.CheckPasswordLength(l.Password) != nil {
		verr.Fields = append(verr.Fields, *fe)
	}
	if len(verr.Fields) > 0 {
		return Tokens{}, &verr
	}
	// An address that cannot be valid still counts as an attempt, under its
	// raw form, so malformed input is no way around the account limit.
	email, fe := user.NormalizeEmail(l.Email)
	account := email
	if fe != nil {
		account = l.Email
	}
	if err := h.d.Guard.Admit(ctx, account, l.IP); err != nil {
		return Tokens{}, err
	}
	if fe != nil {
		return Tokens{}, ErrBadCredentials
	}
	u, err := h.d.Users.ByEmail(ctx, email)
	if errors.Is(err, user.ErrNotFound) {
		// Hash anyway, as often as for an account: answering an unknown
		// email faster than a wrong password would tell who has an
		// account. A verification that failed fails the login as it does
		// for an account (the request ended while waiting for a hashing
		// slot: 503 or 504); a 401 here instead told the two apart
		// whenever the slots were busy.
		if err := h.verifyUnknown(ctx, l.Password, password); err != nil {
			return Tokens{}, fmt.Errorf("login: %w", err)
		}
		return Tokens{}, ErrBadCredentials
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("login: %w", err)
	}
	ok, raw, err := h.verify(ctx, l.Password, password, u.PasswordHash)
	if err != nil {
		return Tokens{}, fmt.Errorf("login: user %s: %w", u.ID, err)
	}
	if !ok {
		// An audit trail for the account owner, without the email (personal
		// data) or anything about the password.
		h.d.Logger.InfoContext(ctx, "login failed", "user_id", u.ID, "reason", "wrong password")
		return Tokens{}, ErrBadCredentials
	}
	if raw || h.d.Hasher.NeedsRehash(u.PasswordHash) {
		h.rehash(ctx, u.ID, u.PasswordHash, password)
	}
	now := h.d.Now().UTC()
	rt, secret, err := session.Issue(h.d.NewID(), "", u.ID, now, h.d.RefreshTTL)
	if err != nil {
		return Tokens{}, fmt.Errorf("login: %w", err)
	}
	if err := h.d.Sessions.Create(ctx, rt); err != nil {
		return Tokens{}, fmt.Errorf("login: %w", err)
	}
	h.d.Logger.InfoContext(ctx, "session started", "user_id", u.ID, "family_id", rt.FamilyID)
	return h.issue.tokens(u.ID, now, rt, secret)
}

// verify checks the password's normalised form against encoded and then,
// if that fails and the typed form differs, the typed form: a hash made
// before passwords were normalised is of the bytes as typed. raw reports a
// match of the typed form only, a hash the caller replaces. The second
// verification depends on the password alone, never on the account, so an
// unknown email pays it too and takes as long.
func (h LoginHandler) verify(ctx context.Context, typed, normalised, encoded string) (ok, raw bool, err error) {
	ok, err = h.d.Hasher.Verify(ctx, normalised, encoded)
	if ok || err != nil || typed == normalised {
		return ok, false, err
	}
	ok, err = h.d.Hasher.Verify(ctx, typed, encoded)
	return ok, ok, err
}

// verifyUnknown does for an unknown email the work verify does for an
// account, against the dummy hash. Until a login has made that hash, the
// login making it counts the hashing as its first verification: one argon2id
// at the configured cost in one hashing slot either way.
func (h LoginHandler) verifyUnknown(ctx context.Context, typed, normalised string) error {
	if encoded := h.dummy.Load(); encoded != nil {
		_, _, err := h.verify(ctx, typed, normalised, *encoded)
		return err
	}
	encoded, err := h.d.Hasher.Hash(ctx, dummyPassword)
	if err != nil {
		return err
	}
	h.dummy.CompareAndSwap(nil, &encoded)
	if typed != normalised {
		_, err = h.d.Hasher.Verify(ctx, typed, encoded)
	}
	return err
}

// rehash upgrades old, a hash made with older cost settings, or of a
// password before normalisation. Failing here must not fail the login: the
// old hash still works and the next login retries. A hash replaced while
// this one was made is left alone: a password change that committed
// meanwhile is not undone by the old password's new hash.
func (h LoginHandler) rehash(ctx context.Context, userID, old, password string) {
	hash, err := h.d.Hasher.Hash(ctx, password)
	if err == nil {
		err = h.d.Users.SetPasswordHash(ctx, userID, old, hash)
	}
	if errors.Is(err, user.ErrHashChanged) {
		h.d.Logger.InfoContext(ctx, "password hash upgrade skipped: the hash changed meanwhile", "user_id", userID)
		return
	}
	if err != nil {
		h.d.Logger.WarnContext(ctx, "password rehash failed", "user_id", userID, "error", err.Error())
		return
	}
	h.d.Logger.InfoContext(ctx, "password hash upgraded", "user_id", userID)
}

// dummyPassword is what the unknown-email path's hash is of. Whether a
// password matches it is never looked at.
const dummyPassword = "not-a-password-anyone-has"

// dummyHash holds a real hash of dummyPassword for the unknown-email path to
// verify against, once a login has made it (verifyUnknown). Every login that
// finds none makes its own, on its own context, and the first kept wins: a
// login cancelled while hashing leaves nothing behind (the next one makes
// it), and none waits for another's hash. A lock held while the first hash
// waited for a hashing slot queued every other unknown email behind it,
// past its own deadline, and that first login paid a hash and a
// verification, twice an account's work.
type dummyHash = atomic.Pointer[string]

// tokenIssuer pairs an access token with a refresh token.
type tokenIssuer struct{ d Deps }

func (t tokenIssuer) tokens(userID string, now time.Time, rt session.RefreshToken, secret string) (Tokens, error) {
	access, err := t.d.Tokens.Sign(userID, t.d.AccessTTL)
	if err != nil {
		return Tokens{}, fmt.Errorf("issue access token: %w", err)
	}
	return Tokens{
		UserID:           userID,
		AccessToken:      access,
		AccessExpiresAt:  now.Add(t.d.AccessTTL),
		RefreshToken:     secret,
		RefreshExpiresAt: rt.ExpiresAt,
	}, nil
}
