package adapters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
)

// LoginGuard is app.LoginGuard on two pkg/limit limiters: one keyed by client
// IP (ipKey), one by account (a digest of the normalised email, accountKey).
// In production both are limit.Redis, so every replica shares the counts.
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
	d, err := g.perIP.Allow(ctx, ipKey(ip))
	if err != nil {
		return fmt.Errorf("login guard: %w", err)
	}
	if !d.Allowed {
		return tooMany("login attempts", LoginIPPolicy, d)
	}
	d, err = g.perAccount.Allow(ctx, accountKey(account))
	if err != nil {
		return fmt.Errorf("login guard: %w", err)
	}
	if !d.Allowed {
		return tooMany("login attempts", LoginAccountPolicy, d)
	}
	return nil
}

// accountKey is the per-account limiter's key for account: the SHA-256 of
// its lower-cased form, never the form itself. The key is a Redis key name,
// which anyone who can list keys or MONITOR Redis reads, and it held every
// address tried within the window, and whatever was typed in an address's
// place (a malformed one is counted as typed: a password in the email field
// too). A digest keeps one bucket per account without naming it. It only
// confirms a guess: whoever hashes a given address finds its bucket (an
// unkeyed digest, as the replicas share no key to make it a keyed one), as
// the profile cache, which holds registered addresses, would show anyway.
// Changing the key format gives each account a fresh bucket once, at the
// upgrade (and one per format while old and new replicas run side by side).
func accountKey(account string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(account)))
	return "account:" + hex.EncodeToString(sum[:])
}

// The quotas' names: their limit.Name (the Redis keys' namespace, the label
// of their fallback metric) and the policy their 429s name in the RateLimit
// headers.
const (
	LoginIPPolicy      = "login-ip"
	LoginAccountPolicy = "login-account"
	SignupIPPolicy     = "signup-ip"
)

// tooMany is the refusal of d by the quota policy.
func tooMany(what, policy string, d limit.Decision) *app.TooManyAttemptsError {
	return &app.TooManyAttemptsError{What: what, RetryAfter: d.RetryAfter,
		Policy: policy, Limit: d.Limit, Window: d.Window, ResetAfter: d.ResetAfter}
}

// ipKey is the per-IP limiter's key for a client address: an IPv4 address
// itself (an IPv4-mapped IPv6 one too), an IPv6 address its /64, the least a
// site or a home line is given, from which one host can pick a fresh
// address for every attempt. Keyed by the whole address, one /64 had as many
// buckets as it liked. What does not parse as an address is kept as given.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip:" + ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return "ip:" + a.String()
	}
	return "ip:" + netip.PrefixFrom(a, 64).Masked().String()
}
