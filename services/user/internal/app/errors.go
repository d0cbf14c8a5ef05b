package app

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadCredentials is the one answer for an unknown email and a wrong
// password alike, so the login endpoint does not reveal who has an account.
var ErrBadCredentials = errors.New("email or password is wrong")

// TooManyAttemptsError refuses a login attempt or a sign-up for a while.
type TooManyAttemptsError struct {
	// What was refused, plural, for the answer: "login attempts", "sign-ups".
	What       string
	RetryAfter time.Duration
}

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("too many %s, retry in %s", e.What, e.RetryAfter.Round(time.Second))
}
