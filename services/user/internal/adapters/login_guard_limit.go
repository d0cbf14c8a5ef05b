package adapters

import (
	"context"
	"fmt"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
)

// LoginGuard is app.LoginGuard on two pkg/limit limiters: one keyed by client
// IP, one by account (the normalised email). In production both are
// limit.Redis, so every replica shares the counts.
type LoginGuard struct {
	perIP, perAccount limit.Limiter
}

// NewLoginGuard checks perIP first: a throttled IP then spends nothing from
// the accounts it targets, so one noisy client cannot lock out many users by
// itself.
func NewLoginGuard(perIP, perAccount limit.Limiter) *LoginGuard {
	return &LoginGuard{perIP: perIP, perAccount: perAccount}
}

var _ app.LoginGuard = (*LoginGuard)(nil)

// Admit spends one attempt from the IP and then from the account.
func (g *LoginGuard) Admit(ctx context.Context, account, ip string) error {
	d, err := g.perIP.Allow(ctx, "ip:"+ip)
	if err != nil {
		return fmt.Errorf("login guard: %w", err)
	}
	if !d.Allowed {
		return &app.TooManyAttemptsError{RetryAfter: d.RetryAfter}
	}
	d, err = g.perAccount.Allow(ctx, "account:"+strings.ToLower(account))
	if err != nil {
		return fmt.Errorf("login guard: %w", err)
	}
	if !d.Allowed {
		return &app.TooManyAttemptsError{RetryAfter: d.RetryAfter}
	}
	return nil
}
