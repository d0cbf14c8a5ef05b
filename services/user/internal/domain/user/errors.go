package user

import (
	"errors"
	"strings"
)

var (
	// ErrNotFound means no account has the id or email asked for.
	ErrNotFound = errors.New("user not found")
	// ErrEmailTaken means another account already uses the (normalised) email.
	ErrEmailTaken = errors.New("email already registered")
	// ErrHashChanged means the password hash was replaced between reading
	// and writing it (a password change, or a login's rehash).
	ErrHashChanged = errors.New("password hash changed meanwhile")
)

// FieldError names the request field a rule rejected.
type FieldError struct {
	Field  string
	Detail string
}

// ValidationError lists every rule a request broke, so a client can fix them
// all in one round trip.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid user: " + strings.Join(parts, "; ")
}
