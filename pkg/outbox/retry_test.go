package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// A failed row's next_attempt_at is PostgreSQL's clock plus the backoff, in whole milliseconds rounded to the
// nearest, and the relay polls for it when its own clock reaches its own reading plus the backoff (see retryAt). That
// reading was truncated to the millisecond, so the poll could come before the row was due by the database: its round
// claimed nothing and forgot the retry, and the row waited for the idle poll (up to MaxIdleInterval). The poll must
// come no sooner than the row is due: read by PostgreSQL when it comes, rounded as PostgreSQL rounds, no less than
// the row's next_attempt_at. The polls are moved to read no earlier than PostgreSQL's clock (see dbAhead), so they
// and the rows' due times are compared on one clock wherever DATABASE_URL points. Compared on this host's clock, a
// database 5 ms ahead of it failed the test with the fix (396 of 400 rows "early"), and one behind would pass it
// without. Each row misses by chance (a few in a hundred), so the test fails many rows at once.
func TestRetryPollComesNoSoonerThanTheRowIsDue(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Postgres(t)
	if err := migrate.Up(ctx, db, Migrations); err != nil {
		t.Fatal(err)
	}
	const n = 400
	err := db.Transaction(func(tx *gorm.DB) error {
		for i := range n {
			k := fmt.Sprintf("k%d", i) // a key each: every row is claimed in the one round
			e, err := event.New("order.created", "/test", k, map[string]string{"order_id": k})
			if err != nil {
				return err
			}
			if err := Add(ctx, tx, "t", k, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, down{}, RelayOptions{BatchSize: n})
	ahead := dbAhead(t, db)
	if claimed, err := r.RunOnce(ctx); err != nil || claimed != n {
		t.Fatalf("RunOnce = %d, %v; want %d rows claimed", claimed, err, n)
	}
	var due []int64
	if err := db.Raw("SELECT next_attempt_at FROM outbox ORDER BY id").Scan(&due).Error; err != nil {
		t.Fatal(err)
	}
	if len(r.retries) != n || len(due) != n {
		t.Fatalf("%d retries remembered for %d rows, want %d", len(r.retries), len(due), n)
	}
	early := 0
	for i, at := range r.retries { // in id order, as record goes through the round's rows
		if at.Add(ahead).Add(time.Millisecond/2).UnixMilli() < due[i] {
			early++
		}
	}
	if early > 0 {
		t.Fatalf("the relay polls for %d of %d failed rows before PostgreSQL finds them due", early, n)
	}
}

// This process's wall clock stepped forward (NTP stepping it, a VM resumed) after a row failed: the relay scheduled
// its poll for the row by the wall clock, so the poll came at once, an hour before PostgreSQL (whose clock the row's
// due time is in, and which did not step) found the row due. That round claimed nothing and forgot the retry, and the
// row waited for the idle poll, up to MaxIdleInterval. The poll now waits out the backoff on the monotonic clock, and
// the round it starts finds the row due.
func TestRetryPollWaitsOutTheBackoffAcrossAClockStep(t *testing.T) {
	ctx := context.Background()
	r := failedOnce(t, dbtest.Postgres(t))
	r.clock = func() time.Time { return time.Now().Add(time.Hour) }
	wait := r.untilRetry(time.Hour)
	if wait <= 0 || wait > failedBackoff {
		t.Fatalf("after the clock stepped an hour forward the retry poll is in %v, want the backoff's (0, %v]",
			wait, failedBackoff)
	}
	time.Sleep(wait) // what Run's timer does
	r.w = &counted{}
	if claimed, err := r.RunOnce(ctx); err != nil || claimed != 1 {
		t.Fatalf("the round at the retry poll claimed %d (%v), want the failed row", claimed, err)
	}
}

// dbAhead returns how far PostgreSQL's clock may be ahead of this process's at most (negative: behind by at least
// that): its clock_timestamp() less this clock read before asking, the least of a few tries. A relay clock moved by
// it reads no earlier than the database's, and later by no more than the quickest try's round trip (well under the
// millisecond a row's due time is rounded to, on a database nearby).
func dbAhead(t *testing.T, db *gorm.DB) time.Duration {
	t.Helper()
	var ahead time.Duration
	for i := range 20 {
		before := time.Now()
		var at time.Time
		if err := db.Raw("SELECT clock_timestamp()").Row().Scan(&at); err != nil {
			t.Fatalf("read PostgreSQL's clock: %v", err)
		}
		if d := at.Sub(before); i == 0 || d < ahead {
			ahead = d
		}
	}
	return ahead
}

// On SQLite a failed row's due time is this process's wall clock plus the backoff (see nowSQL), so the retry poll
// stays on that clock (see retryAt): stepped back an hour after the row failed, the row is due in an hour and the
// backoff by the clock the claim reads, and so is the poll. On the monotonic clock, as on PostgreSQL, the poll came
// after the backoff, its round claimed nothing and forgot the retry, and the row waited for the idle poll.
func TestRetryPollOnSQLiteFollowsTheWallClock(t *testing.T) {
	ctx := context.Background()
	r := failedOnce(t, dbtest.SQLite(t))
	r.clock = func() time.Time { return time.Now().Add(-time.Hour) }
	if wait := r.untilRetry(2 * time.Hour); wait < time.Hour || wait > time.Hour+failedBackoff {
		t.Fatalf("after the clock stepped an hour back the retry poll is in %v, want the hour and the backoff", wait)
	}
	if claimed, err := r.RunOnce(ctx); err != nil || claimed != 0 {
		t.Fatalf("a round before the poll claimed %d (%v), want none: the row is not due by the stepped clock", claimed, err)
	}
}

// failedBackoff is the backoff of failedOnce's relay: its first retry waits 200-400 ms.
const failedBackoff = 400 * time.Millisecond

// failedOnce migrates db, adds a row and returns a relay whose one round failed it, with a backoff of failedBackoff.
func failedOnce(t *testing.T, db *gorm.DB) *Relay {
	t.Helper()
	ctx := context.Background()
	if err := migrate.Up(ctx, db, Migrations); err != nil {
		t.Fatal(err)
	}
	e, err := event.New("order.created", "/test", "k", map[string]string{"order_id": "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Transaction(func(tx *gorm.DB) error { return Add(ctx, tx, "t", "k", e) }); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, down{}, RelayOptions{MinBackoff: failedBackoff, MaxBackoff: failedBackoff})
	if claimed, err := r.RunOnce(ctx); err != nil || claimed != 1 {
		t.Fatalf("RunOnce = %d, %v; want the row claimed and failed", claimed, err)
	}
	return r
}
