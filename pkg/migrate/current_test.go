package migrate

import (
	"context"
	"database/sql"
	"io/fs"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
)

var (
	fileA = &fstest.MapFile{Data: []byte("-- +goose Up\nCREATE TABLE a (id TEXT PRIMARY KEY);\n")}
	fileB = &fstest.MapFile{Data: []byte("-- +goose Up\nCREATE TABLE b (id TEXT PRIMARY KEY);\n")}
)

// currentFor builds the providers UpAll would and asks current.
func currentFor(t *testing.T, db *gorm.DB, sets ...fs.FS) bool {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	var ps []provider
	for i, set := range sets {
		p, err := newProvider(db.Dialector.Name(), sqlDB, Named(string(rune('a'+i)), set))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	ok, err := current(context.Background(), sqlDB, ps)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// The one-query check says "current" only when every set's table records
// exactly the set's versions; anything else sends UpAll down goose's path.
func TestCurrent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		one := fstest.MapFS{"0001_a.sql": fileA}
		two := fstest.MapFS{"0001_a.sql": fileA, "0002_b.sql": fileB}
		if currentFor(t, db, one, one) {
			t.Fatal("current before any version table exists")
		}
		if err := UpAll(ctx, db, Named("a", one)); err != nil {
			t.Fatal(err)
		}
		if !currentFor(t, db, one) {
			t.Fatal("not current right after UpAll")
		}
		if currentFor(t, db, one, one) {
			t.Fatal("current although the second set's table is missing")
		}
		if currentFor(t, db, two) {
			t.Fatal("current although 0002 is not applied")
		}
		if err := UpAll(ctx, db, Named("a", two)); err != nil {
			t.Fatal(err)
		}
		if err := db.Exec("SELECT id FROM b").Error; err != nil {
			t.Fatalf("0002 not applied by UpAll: %v", err)
		}
		if !currentFor(t, db, two) {
			t.Fatal("not current after applying 0002")
		}
		// A version recorded in the database but gone from the files is not
		// "current" either: goose decides what that means.
		if currentFor(t, db, one) {
			t.Fatal("current although the database records a version the set lacks")
		}
	})
}

// Go steps are versions of their set to the one-query check too: a set whose step is pending is not current, and
// once it is applied the usual restart is settled there, without running anything.
func TestCurrentCountsGoSteps(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		files := fstest.MapFS{"0001_a.sql": fileA}
		withStep := WithGo(files, GoStep{Version: 2, Name: "noop", Up: func(context.Context, *sql.Tx) error { return nil }})
		if err := UpAll(ctx, db, Named("a", files)); err != nil {
			t.Fatal(err)
		}
		if currentFor(t, db, withStep) {
			t.Fatal("current although the Go step is not applied")
		}
		if err := UpAll(ctx, db, Named("a", withStep)); err != nil {
			t.Fatal(err)
		}
		if !currentFor(t, db, withStep) {
			t.Fatal("not current after applying the Go step")
		}
		if currentFor(t, db, files) {
			t.Fatal("current although the database records the step the set lacks")
		}
	})
}
