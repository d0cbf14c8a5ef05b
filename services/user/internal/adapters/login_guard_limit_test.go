package adapters_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
)

// On real Redis (limit.Redis): five attempts per account pass, the sixth is
// refused with a wait; other accounts and IPs keep their own quotas.
func TestLoginGuardOnRedis(t *testing.T) {
	rdb := redisClient(t)
	window := limit.Rate{Count: 5, Period: 5 * time.Minute}
	ipRate := limit.Rate{Count: 20, Period: 5 * time.Minute}
	run := uniq("guard")
	g := adapters.NewLoginGuard(
		limit.NewRedis(rdb, ipRate, 1, limit.Name(run+"-ip")),
		limit.NewRedis(rdb, window, 1, limit.Name(run+"-account")),
	)
	ctx := t.Context()
	for i := range 5 {
		if err := g.Admit(ctx, "alice@example.com", "10.0.0.1"); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	err := g.Admit(ctx, "alice@example.com", "10.0.0.2")
	var tooMany *app.TooManyAttemptsError
	if !errors.As(err, &tooMany) || tooMany.RetryAfter <= 0 || tooMany.RetryAfter > time.Minute {
		t.Fatalf("6th attempt on the account: %v", err)
	}
	if err := g.Admit(ctx, "ALICE@example.com", "10.0.0.3"); !errors.As(err, &tooMany) {
		t.Fatalf("case variant of the account slipped through: %v", err)
	}
	if err := g.Admit(ctx, "bob@example.com", "10.0.0.1"); err != nil {
		t.Fatalf("another account: %v", err)
	}
	// One IP spraying many accounts: its own quota (20) runs out.
	for i := range 14 {
		if err := g.Admit(ctx, uniq("victim"), "10.0.0.9"); err != nil {
			t.Fatalf("spray attempt %d: %v", i+1, err)
		}
	}
	for range 6 {
		_ = g.Admit(ctx, uniq("victim"), "10.0.0.9")
	}
	if err := g.Admit(ctx, uniq("victim"), "10.0.0.9"); !errors.As(err, &tooMany) {
		t.Fatalf("21st attempt from one IP: %v", err)
	}
}

// The per-account bucket's Redis key names no account. It held the address
// as typed (lower-cased), so whoever could list or MONITOR Redis read every
// address tried in the last window, and, since a malformed address is
// counted under what was typed, a password typed into the email field. The
// bucket is still one per account, whatever its case.
func TestLoginGuardKeysNameNoAccount(t *testing.T) {
	rdb := redisClient(t)
	run := uniq("guardkey")
	g := adapters.NewLoginGuard(
		limit.NewRedis(rdb, limit.Rate{Count: 20, Period: 5 * time.Minute}, 1, limit.Name(run+"-ip")),
		limit.NewRedis(rdb, limit.Rate{Count: 2, Period: 5 * time.Minute}, 1, limit.Name(run+"-account")),
	)
	ctx := t.Context()
	typed := []string{"alice." + run + "@example.com", "Correct-Horse-" + run}
	for _, account := range typed {
		if err := g.Admit(ctx, account, "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := rdb.Keys(ctx, "*"+run+"-account*").Result()
	if err != nil || len(keys) != len(typed) {
		t.Fatalf("account buckets in Redis: %q, %v; want %d: the check would prove nothing", keys, err, len(typed))
	}
	for _, k := range keys {
		for _, account := range typed {
			if strings.Contains(k, strings.ToLower(account)) {
				t.Errorf("Redis key %q names the account %q", k, account)
			}
		}
	}
	var tooMany *app.TooManyAttemptsError
	if err := g.Admit(ctx, strings.ToUpper(typed[0]), "10.0.0.1"); err != nil {
		t.Fatalf("2nd attempt: %v", err)
	}
	if err := g.Admit(ctx, typed[0], "10.0.0.1"); !errors.As(err, &tooMany) {
		t.Fatalf("3rd attempt on the account, in another case: %v, want too many attempts", err)
	}
}

// An IPv6 client is limited by its /64, from which it can pick an address
// per attempt (it used to get a fresh bucket with each); another /64 keeps
// its own quota, and an IPv4-mapped IPv6 address counts as its IPv4 one.
func TestLoginGuardKeysIPv6ByItsSlash64(t *testing.T) {
	rdb := redisClient(t)
	run := uniq("guard6")
	g := adapters.NewLoginGuard(
		limit.NewRedis(rdb, limit.Rate{Count: 3, Period: 5 * time.Minute}, 1, limit.Name(run+"-ip")),
		limit.NewRedis(rdb, limit.Rate{Count: 100, Period: 5 * time.Minute}, 1, limit.Name(run+"-account")),
	)
	ctx := t.Context()
	var tooMany *app.TooManyAttemptsError
	for i := range 3 {
		if err := g.Admit(ctx, uniq("victim"), fmt.Sprintf("2001:db8:1:2::%x", i+1)); err != nil {
			t.Fatalf("attempt %d from the /64: %v", i+1, err)
		}
	}
	for _, ip := range []string{"2001:db8:1:2:ffff::9", "2001:db8:1:2::1%eth0"} {
		if err := g.Admit(ctx, uniq("victim"), ip); !errors.As(err, &tooMany) {
			t.Fatalf("4th attempt from the /64, as %s: %v", ip, err)
		}
	}
	if err := g.Admit(ctx, uniq("victim"), "2001:db8:1:3::1"); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
	for i := range 3 {
		if err := g.Admit(ctx, uniq("victim"), "10.0.0.9"); err != nil {
			t.Fatalf("attempt %d from 10.0.0.9: %v", i+1, err)
		}
	}
	if err := g.Admit(ctx, uniq("victim"), "::ffff:10.0.0.9"); !errors.As(err, &tooMany) {
		t.Fatalf("10.0.0.9 as IPv4-mapped IPv6: %v", err)
	}
	if err := g.Admit(ctx, uniq("victim"), "10.0.0.10"); err != nil {
		t.Fatalf("the next IPv4 address: %v", err)
	}
}

// On a full Redis (noeviction, as deployed) the guards' limiters cannot
// store an attempt; they decide locally at limit ÷ replicas (pkg/limit), so
// log ins and sign-ups stay limited (deploy's noeviction choice relies on it,
// see its TestRedisNeverEvictsTheLimitersState).
func TestGuardsOnAFullRedisStillRefuse(t *testing.T) {
	rdb := testenv.FullRedis(t, nil)
	window := limit.Rate{Count: 4, Period: 5 * time.Minute}
	const replicas = 2
	login := adapters.NewLoginGuard(
		limit.NewRedis(rdb, limit.Rate{Count: 20, Period: 5 * time.Minute}, replicas, limit.Name("login-ip")),
		limit.NewRedis(rdb, window, replicas, limit.Name("login-account")),
	)
	signup := adapters.NewSignupGuard(limit.NewRedis(rdb, window, replicas, limit.Name("signup-ip")))
	ctx := t.Context()
	var tooMany *app.TooManyAttemptsError
	for i := range window.Count / replicas {
		if err := login.Admit(ctx, "alice@example.com", "10.0.0.1"); err != nil {
			t.Fatalf("log in %d: %v", i+1, err)
		}
		if err := signup.Admit(ctx, "10.0.0.1"); err != nil {
			t.Fatalf("sign-up %d: %v", i+1, err)
		}
	}
	if err := login.Admit(ctx, "alice@example.com", "10.0.0.1"); !errors.As(err, &tooMany) {
		t.Fatalf("log in past limit ÷ replicas on a full Redis: %v, want too many attempts", err)
	}
	if err := signup.Admit(ctx, "10.0.0.1"); !errors.As(err, &tooMany) {
		t.Fatalf("sign-up past limit ÷ replicas on a full Redis: %v, want too many attempts", err)
	}
}
