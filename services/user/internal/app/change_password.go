package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// ErrWrongPassword refuses a password change whose current password does not
// match. It is not ErrBadCredentials: the caller's token is good, and a 401
// would tell a client to log in again rather than to retype the password.
var ErrWrongPassword = errors.New("the current password is wrong")

// ChangePassword is a signed-in user's request for a new password; IP is the
// client address the port saw.
type ChangePassword struct {
	UserID  string
	Current string
	New     string
	IP      string
}

// ChangePasswordHandler replaces a password and ends every session.
type ChangePasswordHandler struct{ login LoginHandler }

// Handle checks the new password by the sign-up policy, spends a login
// attempt of the account and the IP (the current password is guessed here
// as at log-in, with a stolen access token: one quota for both), verifies
// the current password, then stores the new hash and revokes every refresh
// token of the account in one transaction (CredentialStore), so a session
// opened with the old password ends with it.
// Access tokens already issued stay good until their exp, as after a
// logout: every service verifies them offline. Once the current password is
// verified the change is carried out even if the client goes away (see
// revoking): a hash stored with the sessions left alive would be the worst
// half to stop at.
func (h ChangePasswordHandler) Handle(ctx context.Context, r ChangePassword) error {
	d := h.login.d
	var verr user.ValidationError
	// Too long in both forms: no account has it (as at log-in).
	current := user.NormalizePassword(r.Current)
	if fe := user.CheckPasswordLength(current); fe != nil && user.CheckPasswordLength(r.Current) != nil {
		verr.Fields = append(verr.Fields, user.FieldError{Field: "current_password", Detail: fe.Detail})
	}
	u, err := d.Users.ByID(ctx, r.UserID)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	next := user.NormalizePassword(r.New)
	if fe := user.CheckPassword(next, u.Email); fe != nil {
		verr.Fields = append(verr.Fields, user.FieldError{Field: "new_password", Detail: fe.Detail})
	} else if next == current {
		// Compared as hashed (NFKC), before any attempt is spent: both
		// strings are the client's, so this tells it nothing about the
		// stored password. Accepted, it changed nothing but ended every
		// session (OWASP ASVS: the new password differs from the current).
		verr.Fields = append(verr.Fields, user.FieldError{Field: "new_password", Detail: "must differ from the current password"})
	}
	if len(verr.Fields) > 0 {
		return &verr
	}
	if err := d.Guard.Admit(ctx, u.Email, r.IP); err != nil {
		return err
	}
	ok, _, err := h.login.verify(ctx, r.Current, current, u.PasswordHash)
	if err != nil {
		return fmt.Errorf("change password: user %s: %w", u.ID, err)
	}
	if !ok {
		d.Logger.InfoContext(ctx, "password change refused", "user_id", u.ID, "reason", "wrong current password")
		return ErrWrongPassword
	}
	hash, err := d.Hasher.Hash(ctx, next)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	ctx, cancel := revoking(ctx)
	defer cancel()
	// Only over the hash just verified: a change or a rehash that
	// committed meanwhile is not overwritten, and this one is retried.
	// The hash and the revocation commit together, so a failure leaves the
	// old password and its sessions, and a retry with it succeeds.
	if err := d.Credentials.ReplacePassword(ctx, u.ID, u.PasswordHash, hash, d.Now().UTC()); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	d.Logger.InfoContext(ctx, "password changed, sessions revoked", "user_id", u.ID)
	return nil
}
