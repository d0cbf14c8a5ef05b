package service_test

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/migrations"
)

// firstVersion is the service's migration set as it was before emails were
// NFKC-normalised: 0001 only.
func firstVersion(t *testing.T) fs.FS {
	t.Helper()
	old := fstest.MapFS{}
	names, err := fs.Glob(migrations.FS, "0001_*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("0001 migrations: %v %v", names, err)
	}
	for _, name := range names {
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		old[name] = &fstest.MapFile{Data: b}
	}
	return old
}

// An account stored before NFKC normalisation, under "e" plus a combining
// accent, logs in again once the service has started on its database, under
// either way of typing "é"; the address cannot be registered a second time;
// a later account whose address collapses to the same one keeps its stored
// form and is logged, instead of taking the address over.
func TestAccountStoredBeforeNFKCLogsIn(t *testing.T) {
	for dialect, url := range storetest.URLs(t) {
		t.Run(dialect, func(t *testing.T) {
			var b [4]byte
			_, _ = rand.Read(b[:])
			tag := fmt.Sprintf("%x", b) // the login guard's Redis buckets are shared between runs
			decomposed := "e\u0301" + tag + "@example.com"
			composed := "\u00e9" + tag + "@example.com"
			lookalike := "\uff45\u0301" + tag + "@example.com"

			db, err := database.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, firstVersion(t)); err != nil {
				t.Fatal(err)
			}
			hasher := adapters.NewArgon2(adapters.Argon2Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
			created := time.Now().UTC().Add(-time.Hour)
			for i, acc := range []struct{ id, email, password string }{
				{"decomposed-" + tag, decomposed, password},
				{"lookalike-" + tag, lookalike, "another horse battery"},
			} {
				hash, err := hasher.Hash(t.Context(), acc.password)
				if err != nil {
					t.Fatal(err)
				}
				at := created.Add(time.Duration(i) * time.Minute)
				// As that release stored it: its columns, not today's repository's.
				if err := db.Exec("INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (?, ?, 'Old', ?, ?, ?)",
					acc.id, acc.email, hash, at, at).Error; err != nil {
					t.Fatal(err)
				}
			}
			if err := database.Close(db); err != nil {
				t.Fatal(err)
			}

			h := newHarness(t, map[string]string{"DATABASE_URL": url})
			for _, typed := range []string{decomposed, composed} {
				r := h.login(typed, password)
				if r.Code != http.StatusCreated || r.json(t)["user_id"] != "decomposed-"+tag {
					t.Errorf("login as %+q: %d %s", typed, r.Code, r.Body)
				}
			}
			isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"New"}`, composed, password)), http.StatusConflict, "email")
			if r := h.login(lookalike, "another horse battery"); r.Code != http.StatusUnauthorized {
				t.Errorf("the later look-alike logged in: %d %s", r.Code, r.Body)
			}
			if !strings.Contains(h.logs.String(), `"user_id":"lookalike-`+tag+`","holder_id":"decomposed-`+tag+`"`) {
				t.Errorf("the kept look-alike is not logged:\n%s", h.logs)
			}
		})
	}
}
