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
// Besides the wait it carries the quota that was used up, for the RateLimit
// headers a client reads as it reads the gateway's (pkg/limit.Middleware).
type TooManyAttemptsError struct {
	// What was refused, plural, for the answer: "login attempts", "sign-ups".
	What       string
	RetryAfter time.Duration
	// Policy names the quota ("login-ip", "login-account", "signup-ip");
	// Limit is its size and Window the time in which it refills, and
	// ResetAfter how long until it is full again. An empty Policy sends no
	// RateLimit headers.
	Policy     string
	Limit      int
	Window     time.Duration
	ResetAfter time.Duration
}

func (e *TooManyAttemptsError) Error() string {
	return fmt.Sprintf("too many %s, retry in %s", e.What, e.RetryAfter.Round(time.Second))
}
