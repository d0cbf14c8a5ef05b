package service_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
	"github.com/shanhai-dev/shanhai/services/user/migrations"
)

// invisible are characters that NFKC keeps and that show nothing (or nothing
// of their own) where an address is displayed, so an address with one looks
// like the address without it: format characters (zero-width space, joiners,
// word joiner, BOM, soft hyphen, bidi embeddings and isolates), a C1 control,
// a line separator, a variation selector, a Hangul filler and a private-use
// character.
var invisible = map[string]string{
	"ZERO WIDTH SPACE":          "\u200b",
	"ZERO WIDTH NON-JOINER":     "\u200c",
	"ZERO WIDTH JOINER":         "\u200d",
	"WORD JOINER":               "\u2060",
	"BYTE ORDER MARK":           "\ufeff",
	"SOFT HYPHEN":               "\u00ad",
	"RIGHT-TO-LEFT OVERRIDE":    "\u202e",
	"LEFT-TO-RIGHT EMBEDDING":   "\u202a",
	"FIRST STRONG ISOLATE":      "\u2068",
	"POP DIRECTIONAL ISOLATE":   "\u2069",
	"NEXT LINE (C1 control)":    "\u0085",
	"LINE SEPARATOR":            "\u2028",
	"VARIATION SELECTOR-16":     "\ufe0f",
	"HANGUL FILLER":             "\u3164",
	"private use U+E000":        "\ue000",
	"TAG LATIN SMALL LETTER A":  "\U000e0061",
	"MONGOLIAN VOWEL SEPARATOR": "\u180e",
}

// A sign-up whose email holds an invisible character, anywhere in it (but
// white space at either end, which is trimmed), is 422 naming the field email: it would register beside the address without
// the character, an account that looks like someone else's. An address with
// visible non-ASCII letters still registers.
func TestSignupRefusesInvisibleCharactersInEmail(t *testing.T) {
	h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "1000"})
	for name, ch := range invisible {
		local := strings.TrimSuffix(uniqEmail(), "@example.com")
		emails := []string{local[:3] + ch + local[3:] + "@example.com", local + "@exa" + ch + "mple.com"}
		if strings.TrimSpace(ch) != "" { // white space at an end is trimmed off, as it always was
			emails = append(emails, ch+local+"@example.com")
		}
		for _, email := range emails {
			body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": "Mallory"})
			r := h.do("POST", "/api/v1/users", string(body))
			if r.Code != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"email"`) {
				t.Errorf("sign-up as %+q (%s): %d %s, want 422 naming email", email, name, r.Code, r.Body)
			}
		}
	}
	h.register("\u00e9" + strings.TrimPrefix(uniqEmail(), "u"))
}

// An account an older release stored with an invisible character in its
// address (it normalised the address as today's NormalizeEmail does, and
// refused nothing more) still logs in, typed as it was stored or with the
// case and the spaces a login forgives; only sign-up refuses such addresses.
func TestAccountWithAnInvisibleCharacterInItsEmailLogsIn(t *testing.T) {
	h := newHarness(t, map[string]string{"LOGIN_IP_ATTEMPTS": "1000"})
	hasher := adapters.NewArgon2(adapters.Argon2Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	hash, err := hasher.Hash(t.Context(), password)
	if err != nil {
		t.Fatal(err)
	}
	repo := adapters.NewUserGorm(h.svc.DB)
	for name, ch := range invisible {
		// Inside the local part: a login trims white space (NEXT LINE, LINE
		// SEPARATOR) off the ends of what it is given, as sign-up always did.
		local := strings.TrimSuffix(uniqEmail(), "@example.com")
		typed := local[:3] + ch + local[3:] + "@example.com"
		stored, fe := user.NormalizeEmail(typed)
		if fe != nil {
			t.Errorf("NormalizeEmail(%+q) (%s) refused: %v; a login could never find such an account", typed, name, fe)
			continue
		}
		id := "invisible-" + local
		now := time.Now().UTC().Truncate(time.Microsecond)
		if err := repo.Add(t.Context(), user.User{ID: id, Email: stored, Name: "Old", PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		for _, as := range []string{typed, "  " + strings.ToUpper(typed) + " "} {
			body, _ := json.Marshal(map[string]string{"email": as, "password": password})
			r := h.do("POST", "/api/v1/sessions", string(body))
			if r.Code != http.StatusCreated || r.json(t)["user_id"] != id {
				t.Errorf("login as %+q (%s): %d %s, want 201 for %s", as, name, r.Code, r.Body, id)
			}
		}
	}
}

// Accounts an older release stored with an invisible character in their
// email (before 85d5277) are reported, not rewritten: the start logs one
// WARN with their number and ids (never an address) and the gauge
// shanhai.user.accounts.invisible_email shows the number. And the address
// one reads as can no longer register beside it: that sign-up is a 409 like
// any duplicate, before any hash, while an address no account reads as
// still registers.
func TestStoredInvisibleEmailsAreReportedAndNotShadowed(t *testing.T) {
	tp, err := telemetry.Setup(t.Context(), telemetry.Options{ServiceName: "user-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())

	// The database as the release before migration 0005 left it, with rows
	// stored as that code stored them.
	url := testenv.Postgres(t)
	db, err := database.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Close(db) })
	if err := migrate.UpAll(t.Context(), db, outbox.Migrations, beforeVersion5(t)); err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{
		"0193a000-0000-7000-8000-000000000001": "ali\u200bce@example.com",
		"0193a000-0000-7000-8000-000000000002": "\ufeffbob@example.com",
		"0193a000-0000-7000-8000-000000000003": "e\u200b\u0301@example.com", // reads as "é@example.com"
		"0193a000-0000-7000-8000-000000000004": "carol@example.com",
	}
	for id, email := range stored {
		if err := db.Exec("INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (?, ?, 'Old', '$argon2id$old', ?, ?)",
			id, email, time.Now().UTC(), time.Now().UTC()).Error; err != nil {
			t.Fatal(err)
		}
	}

	h := newHarness(t, map[string]string{"DATABASE_URL": url, "SIGNUP_IP_ATTEMPTS": "1000"})
	// The report runs beside the start's other workers, off the way to ready.
	if err := h.svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var warns []map[string]any
	for deadline := time.Now().Add(10 * time.Second); len(warns) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for line := range strings.Lines(h.logs.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "invisible character") {
				warns = append(warns, rec)
			}
		}
	}
	wantIDs := `["0193a000-0000-7000-8000-000000000001","0193a000-0000-7000-8000-000000000002","0193a000-0000-7000-8000-000000000003"]`
	if len(warns) != 1 {
		t.Fatalf("%d WARN lines about invisible characters, want 1:\n%s", len(warns), h.logs)
	}
	if ids, _ := json.Marshal(warns[0]["user_ids"]); warns[0]["count"] != float64(3) || string(ids) != wantIDs {
		t.Errorf("WARN count %v, user_ids %s; want 3, %s", warns[0]["count"], ids, wantIDs)
	}
	if strings.Contains(h.logs.String(), "example.com") { // every stored address, and what each reads as
		t.Errorf("the start's log names an address:\n%s", h.logs)
	}

	metrics := httptest.NewRecorder()
	tp.MetricsHandler().ServeHTTP(metrics, httptest.NewRequest("GET", "/metrics", nil))
	gauged := false
	for line := range strings.Lines(metrics.Body.String()) {
		gauged = gauged || strings.HasPrefix(line, "shanhai_user_accounts_invisible_email") && strings.HasSuffix(strings.TrimSpace(line), " 3")
	}
	if !gauged {
		t.Errorf("/metrics has no shanhai_user_accounts_invisible_email of 3:\n%s", metrics.Body)
	}

	for _, email := range []string{"alice@example.com", "BOB@example.com", "e\u0301@example.com", "carol@example.com"} {
		body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": "Mallory"})
		r := h.do("POST", "/api/v1/users", string(body))
		isProblem(t, r, http.StatusConflict, "email")
	}
	h.register("dave@example.com")
	if got := emailsOf(t, h); len(got) != 5 || got["0193a000-0000-7000-8000-000000000001"] != stored["0193a000-0000-7000-8000-000000000001"] {
		t.Errorf("accounts %+q: want the four stored, as stored, and dave's", got)
	}
}

// beforeVersion5 is the user service's migration set as the release before
// migration 0005 had it: the SQL files up to 0004 and Go step 3. That step
// rewrites stored addresses; with no account stored yet it has nothing to
// do, so a no-op stands in for it under its name (what its checksum sums).
func beforeVersion5(t *testing.T) fs.FS {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "000[1-4]_*.sql")
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{}
	for _, name := range names {
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = &fstest.MapFile{Data: b}
	}
	return migrate.WithGo(files, migrate.GoStep{Version: 3, Name: "email_nfkc_rewrite",
		Up: func(context.Context, *sql.Tx) error { return nil }})
}

// emailsOf maps each account's id to its stored email.
func emailsOf(t *testing.T, h *harness) map[string]string {
	t.Helper()
	var rows []struct{ ID, Email string }
	if err := h.svc.DB.Table("users").Select("id", "email").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r.ID] = r.Email
	}
	return m
}
