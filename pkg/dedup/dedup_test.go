package dedup_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

func setup(t *testing.T, db *gorm.DB) {
	t.Helper()
	if err := migrate.Up(context.Background(), db, dedup.Migrations); err != nil {
		t.Fatal(err)
	}
}

func once(t *testing.T, db *gorm.DB, consumer, id string) bool {
	t.Helper()
	var first bool
	err := db.Transaction(func(tx *gorm.DB) error {
		var err error
		first, err = dedup.Once(context.Background(), tx, consumer, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return first
}

func TestOnceFirstThenDuplicate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		setup(t, db)
		if !once(t, db, "payment", "e1") {
			t.Fatal("first delivery reported as duplicate")
		}
		if once(t, db, "payment", "e1") {
			t.Fatal("second delivery reported as first")
		}
		// Consumers are independent: the same event is new to another one.
		if !once(t, db, "order", "e1") {
			t.Fatal("another consumer's record hid the event")
		}
		if !once(t, db, "payment", "e2") {
			t.Fatal("another event reported as duplicate")
		}
	})
}

// A handler that fails rolls back its record too, so the redelivery is handled.
func TestOnceRolledBackWithHandler(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		setup(t, db)
		boom := errors.New("handler failed")
		err := db.Transaction(func(tx *gorm.DB) error {
			first, err := dedup.Once(context.Background(), tx, "payment", "e1")
			if err != nil || !first {
				t.Fatalf("first=%v err=%v", first, err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if !once(t, db, "payment", "e1") {
			t.Fatal("rolled-back delivery still recorded")
		}
	})
}

// Concurrent deliveries of one event (two replicas, or a redelivery racing the first): exactly one sees first=true.
func TestOnceConcurrentDeliveries(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		setup(t, db)
		const workers = 8
		var wg sync.WaitGroup
		firsts := make(chan bool, workers)
		start := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := db.Transaction(func(tx *gorm.DB) error {
					first, err := dedup.Once(context.Background(), tx, "payment", "same")
					firsts <- first
					if database.Dialect(db) == database.Postgres {
						time.Sleep(5 * time.Millisecond) // hold the transaction so the others wait on it
					}
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(firsts)
		n := 0
		for f := range firsts {
			if f {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d deliveries saw first=true, want 1", n)
		}
	})
}

func TestOnceRejectsEmptyIDs(t *testing.T) {
	db := dbtest.SQLite(t)
	setup(t, db)
	if _, err := dedup.Once(context.Background(), db, "", "e"); err == nil {
		t.Fatal("empty consumer accepted")
	}
	if _, err := dedup.Once(context.Background(), db, "c", ""); err == nil {
		t.Fatal("empty event id accepted")
	}
}

func TestCleanup(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		setup(t, db)
		once(t, db, "c", "old")
		db.Exec("UPDATE processed_events SET processed_at = ? WHERE event_id = 'old'", time.Now().UTC().Add(-48*time.Hour))
		once(t, db, "c", "new")
		n, err := dedup.Cleanup(context.Background(), db, time.Now().Add(-24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("cleanup removed %d (%v), want 1", n, err)
		}
		if once(t, db, "c", "new") {
			t.Fatal("cleanup removed a fresh record")
		}
	})
}

// Insert records a pair once inside the caller's statement, for each row of its source, and only when there is one.
func TestInsertInsideAStatement(t *testing.T) {
	db := dbtest.Postgres(t)
	setup(t, db)
	if err := db.Exec("CREATE TABLE aggregates (id TEXT PRIMARY KEY)").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("INSERT INTO aggregates VALUES ('a')").Error; err != nil {
		t.Fatal(err)
	}
	lockAndRecord := func(id, event string) (found, first bool) {
		t.Helper()
		ins, args, err := dedup.Insert("order", event, "l")
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct {
			ID    string
			First bool
		}
		q := "WITH l AS (SELECT id FROM aggregates WHERE id = ? FOR UPDATE), d AS (" + ins + ") SELECT l.id, EXISTS (SELECT 1 FROM d) AS first FROM l"
		if err := db.Raw(q, append([]any{id}, args...)...).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			return false, false
		}
		return true, rows[0].First
	}
	if found, first := lockAndRecord("a", "e1"); !found || !first {
		t.Fatalf("first delivery: found %v first %v", found, first)
	}
	if found, first := lockAndRecord("a", "e1"); !found || first {
		t.Fatalf("second delivery: found %v first %v", found, first)
	}
	// No row to lock, nothing recorded: the event is still new once the aggregate exists.
	if found, _ := lockAndRecord("b", "e2"); found {
		t.Fatal("found a missing aggregate")
	}
	if !once(t, db, "order", "e2") {
		t.Fatal("an event was recorded for a missing aggregate")
	}
	if _, _, err := dedup.Insert("", "e", "l"); err == nil {
		t.Fatal("Insert took an empty consumer")
	}
}
