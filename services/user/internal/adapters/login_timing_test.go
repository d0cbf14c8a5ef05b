package adapters_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
)

type admitLogins struct{}

func (admitLogins) Admit(context.Context, string, string) error { return nil }

type admitSignups struct{}

func (admitSignups) Admit(context.Context, string) error { return nil }

// BenchmarkLoginWrongPassword times failed logins for an address with an
// account (a wrong password) and for one without, on PostgreSQL and
// argon2id at the deployed cost: a difference would tell an attacker who has
// an account. Each iteration makes one of each, alternating which goes
// first, so both meet the same load; it reports the median of each
// (known-ns, unknown-ns), since a shared machine's outliers move a mean:
//
//	go test -run '^$' -bench LoginWrongPassword -benchtime 150x ./internal/adapters
func BenchmarkLoginWrongPassword(b *testing.B) {
	db := storetest.Databases(b, migrateAll)[database.Postgres]
	a := app.New(app.Deps{Users: adapters.NewUserGorm(db), Hasher: adapters.NewArgon2(adapters.DefaultArgon2, 1),
		Guard: admitLogins{}, Signups: admitSignups{}, Logger: slog.New(slog.DiscardHandler), NewID: uuid.NewString})
	ctx := context.Background()
	const known = "alice@example.com"
	if _, err := a.Register.Handle(ctx, app.Register{Email: known, Password: "correct horse battery", Name: "Alice"}); err != nil {
		b.Fatal(err)
	}
	fail := func(email string) time.Duration {
		start := time.Now()
		_, err := a.Login.Handle(ctx, app.Login{Email: email, Password: "not the password 77", IP: "10.0.0.1"})
		if !errors.Is(err, app.ErrBadCredentials) {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	// The first unknown address makes the dummy hash: outside the timing.
	fail("warm@example.com")
	var knownNs, unknownNs []float64
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			knownNs = append(knownNs, float64(fail(known)))
			unknownNs = append(unknownNs, float64(fail("nobody@example.com")))
		} else {
			unknownNs = append(unknownNs, float64(fail("nobody@example.com")))
			knownNs = append(knownNs, float64(fail(known)))
		}
		i++
	}
	b.ReportMetric(median(knownNs), "known-ns")
	b.ReportMetric(median(unknownNs), "unknown-ns")
}

func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
