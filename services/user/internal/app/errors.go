package app

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadCredentials is the one answer for an unknown email and a wrong
// password alike, so the login endpoint does not reveal who has an account.
var ErrBadCredentials = errors.New("email or password is wrong")

// TooManyAttemptsError refuses a login attempt for a while.
type TooManyAttemptsError struct {
	RetryAfter time.Duration
}

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("too many login attempts, retry in %s", e.RetryAfter.Round(time.Second))
}
