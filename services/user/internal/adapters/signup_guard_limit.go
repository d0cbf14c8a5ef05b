package adapters

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
)

// SignupGuard is app.SignupGuard on a pkg/limit limiter keyed by client IP
// as the login guard keys it (ipKey: an IPv6 client by its /64).
//
// Per IP, not for the whole service: a global cap would let one flood refuse
// every new customer, and the hashing slots (ARGON2_CONCURRENCY) already
// bound what concurrent hashes cost in memory. What this does not stop is a
// flood spread over many addresses; that needs the edge (proof of work, a
// CAPTCHA, confirming the address by mail). The price is paid by many people
// behind one address (an office NAT, carrier-grade NAT): they share the quota.
type SignupGuard struct {
	perIP limit.Limiter
}

// NewSignupGuard spends sign-ups from perIP (limit.Redis in production, so
// every replica shares the counts).
func NewSignupGuard(perIP limit.Limiter) *SignupGuard {
	return &SignupGuard{perIP: perIP}
}

var _ app.SignupGuard = (*SignupGuard)(nil)

// Admit spends one sign-up from the IP.
func (g *SignupGuard) Admit(ctx context.Context, ip string) error {
	d, err := g.perIP.Allow(ctx, ipKey(ip))
	if err != nil {
		return fmt.Errorf("sign-up guard: %w", err)
	}
	if !d.Allowed {
		return tooMany("sign-ups", SignupIPPolicy, d)
	}
	return nil
}
