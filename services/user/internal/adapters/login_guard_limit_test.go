package adapters_test

import (
	"errors"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/limit"
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
