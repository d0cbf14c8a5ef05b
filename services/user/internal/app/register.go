package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// Register is a sign-up request as the client sent it; IP is the client
// address the port saw.
type Register struct {
	Email    string
	Password string
	Name     string
	IP       string
}

// RegisterHandler creates an account.
type RegisterHandler struct{ d Deps }

// Handle validates every field (reporting all problems at once), hashes the
// password (its NFKC form, user.NormalizePassword) and stores the account
// with its user.registered event.
func (h RegisterHandler) Handle(ctx context.Context, r Register) (user.Profile, error) {
	var verr user.ValidationError
	email, fe := user.NormalizeEmail(r.Email)
	if fe == nil {
		fe = user.CheckNewEmail(email) // a login does not: accounts stored before it log in
	}
	if fe != nil {
		verr.Fields = append(verr.Fields, *fe)
	}
	name, fe := user.NormalizeName(r.Name)
	if fe != nil {
		verr.Fields = append(verr.Fields, *fe)
	}
	password := user.NormalizePassword(r.Password)
	if fe := user.CheckPassword(password, email); fe != nil {
		verr.Fields = append(verr.Fields, *fe)
	}
	if len(verr.Fields) > 0 {
		return user.Profile{}, &verr
	}
	// Invalid requests cost nothing and are not counted; every other one
	// is, before the lookup and the hash (see SignupGuard).
	if err := h.d.Signups.Admit(ctx, r.IP); err != nil {
		return user.Profile{}, fmt.Errorf("register: %w", err)
	}
	// A registered address is refused before the hash: argon2id for an
	// answer that can only be 409 spends the hashing slots logins wait for.
	// So is one an older release stored with an invisible character in it,
	// which reads as this address (EmailTaken): the new account would look
	// like it. The unique index still decides two sign-ups racing for a
	// free address (Add); no new address holds such a character, so the
	// look-alikes are all stored already and none can race this one.
	switch taken, err := h.d.Users.EmailTaken(ctx, email); {
	case err != nil:
		return user.Profile{}, fmt.Errorf("register: %w", err)
	case taken:
		return user.Profile{}, fmt.Errorf("register: %w", user.ErrEmailTaken)
	}
	hash, err := h.d.Hasher.Hash(ctx, password)
	if err != nil {
		return user.Profile{}, fmt.Errorf("register: %w", err)
	}
	now := h.d.Now().UTC()
	u := user.User{ID: h.d.NewID(), Email: email, Name: name, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := h.d.Users.Add(ctx, u); err != nil {
		return user.Profile{}, fmt.Errorf("register: %w", err)
	}
	h.d.Logger.InfoContext(ctx, "user registered", "user_id", u.ID)
	return u.Profile(), nil
}
