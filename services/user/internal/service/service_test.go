package service_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/config"
	"github.com/shanhai-dev/shanhai/services/user/internal/service"
)

// harness is one user service wired exactly as main wires it, on a fresh
// PostgreSQL database and the shared test Redis, driven through its HTTP
// handler. Every response body is kept so tests can scan what left the
// service.
type harness struct {
	t       *testing.T
	svc     *service.Service
	key     auth.Key
	logs    *testenv.LogBuffer
	ip      string
	mu      sync.Mutex
	bodies  []string
	handler http.Handler
}

func randomIP() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("10.%d.%d.%d", b[0], b[1], b[2])
}

func newHarness(t *testing.T, env map[string]string) *harness {
	t.Helper()
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b64, err := auth.MarshalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"ETCD_ENDPOINTS":   "",
		"AUTH_SIGNING_KEY": b64,
		"ADMIN_ADDR":       "",
		// Cheaper hashing keeps the suite quick; the cost settings are
		// covered by the adapter tests.
		"ARGON2_MEMORY_KIB": "8192",
		"ARGON2_TIME":       "1",
	}
	for k, v := range env {
		vars[k] = v
	}
	// The shared servers only where env names none (serverFree): testenv
	// fails a test whose server is not there.
	if _, ok := vars["DATABASE_URL"]; !ok {
		vars["DATABASE_URL"] = testenv.Postgres(t)
	}
	if _, ok := vars["REDIS_URL"]; !ok {
		vars["REDIS_URL"] = testenv.Redis(t)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	var cfg config.Config
	if err := pkgconfig.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	log := telemetry.NewLogger(logs, slog.LevelDebug)
	svc, err := service.New(t.Context(), cfg, service.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return &harness{t: t, svc: svc, key: key, logs: logs, ip: randomIP(), handler: svc.Server.Handler()}
}

type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

func (h *harness) do(method, path, body string, headers ...string) response {
	h.t.Helper()
	return h.doContext(context.Background(), method, path, body, headers...)
}

// doContext is do with the request's context, to stand for a client that
// has gone away (a cancelled ctx).
func (h *harness) doContext(ctx context.Context, method, path, body string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	req.RemoteAddr = h.ip + ":40000"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, req)
	h.mu.Lock()
	h.bodies = append(h.bodies, w.Body.String()+fmt.Sprint(w.Header()))
	h.mu.Unlock()
	return response{Code: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
}

func uniqEmail() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("u%x@example.com", b)
}

const password = "correct horse battery"

func (h *harness) register(email string) map[string]any {
	h.t.Helper()
	r := h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"Alice"}`, email, password))
	if r.Code != http.StatusCreated {
		h.t.Fatalf("register: %d %s", r.Code, r.Body)
	}
	return r.json(h.t)
}

func (h *harness) login(email, pw string) response {
	h.t.Helper()
	return h.do("POST", "/api/v1/sessions", fmt.Sprintf(`{"email":%q,"password":%q}`, email, pw))
}

func (h *harness) tokens(email string) (access, refresh string) {
	h.t.Helper()
	r := h.login(email, password)
	if r.Code != http.StatusCreated {
		h.t.Fatalf("login: %d %s", r.Code, r.Body)
	}
	m := r.json(h.t)
	return m["access_token"].(string), m["refresh_token"].(string)
}

func isProblem(t *testing.T, r response, status int, field string) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status = %d, want %d: %s", r.Code, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q for %d", ct, status)
	}
	p := r.json(t)
	if p["status"] != float64(status) {
		t.Fatalf("problem status = %v", p["status"])
	}
	if typ, _ := p["type"].(string); typ == "" {
		t.Fatalf("problem without a type: %s", r.Body)
	}
	if field == "" {
		return
	}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		if e.(map[string]any)["field"] == field {
			return
		}
	}
	t.Fatalf("problem does not name field %q: %s", field, r.Body)
}

func TestRegisterLoginProfile(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	p := h.register("  " + strings.ToUpper(email) + " ")
	if p["email"] != email || p["name"] != "Alice" || p["id"] == "" {
		t.Fatalf("profile = %v", p)
	}
	isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"B"}`, email, password)), 409, "email")

	access, _ := h.tokens(email)
	r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access)
	if r.Code != 200 || r.json(t)["id"] != p["id"] {
		t.Fatalf("me: %d %s", r.Code, r.Body)
	}
	// The gateway's header agreeing with the token is fine; disagreeing is not.
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access, "X-User-ID", p["id"].(string)); r.Code != 200 {
		t.Fatalf("matching X-User-ID: %d", r.Code)
	}
	isProblem(t, h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access, "X-User-ID", "someone-else"), 401, "")
	isProblem(t, h.do("GET", "/api/v1/users/me", "", "X-User-ID", p["id"].(string)), 401, "")

	// Profile cache: filled on read, dropped on change.
	cacheKey := "user:profile:" + p["id"].(string)
	if n := h.svc.Redis.Exists(t.Context(), cacheKey).Val(); n != 1 {
		t.Fatal("profile not cached after GET")
	}
	r = h.do("PATCH", "/api/v1/users/me", `{"name":"Alice Liddell"}`, "Authorization", "Bearer "+access)
	if r.Code != 200 || r.json(t)["name"] != "Alice Liddell" {
		t.Fatalf("patch: %d %s", r.Code, r.Body)
	}
	if n := h.svc.Redis.Exists(t.Context(), cacheKey).Val(); n != 0 {
		t.Fatal("profile cache not invalidated by PATCH")
	}
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.json(t)["name"] != "Alice Liddell" {
		t.Fatalf("after patch: %s", r.Body)
	}
	isProblem(t, h.do("PATCH", "/api/v1/users/me", `{"name":""}`, "Authorization", "Bearer "+access), 422, "name")
	isProblem(t, h.do("PATCH", "/api/v1/users/me", `{"email":"x@y.z"}`, "Authorization", "Bearer "+access), 400, "email")

	// The registration is in the outbox for the relay.
	var n int64
	h.svc.DB.Table("outbox").Where("event_type = ? AND key = ?", "user.registered", p["id"]).Count(&n)
	if n != 1 {
		t.Fatalf("user.registered outbox rows = %d", n)
	}

	r = h.do("GET", "/.well-known/jwks.json", "")
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0]["kid"] != h.key.Kid {
		t.Fatalf("jwks: %s", r.Body)
	}
}

func TestBadInputAnswersProblemNamingTheField(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name, path, body, ctype string
		status                  int
		field                   string
	}{
		{"malformed JSON", "/api/v1/users", `{"email":`, "", 400, ""},
		{"unknown field", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"A","admin":true}`, "", 400, "admin"},
		{"wrong type", "/api/v1/users", `{"email":"a@b.co","password":123,"name":"A"}`, "", 400, "password"},
		{"missing field", "/api/v1/users", `{"email":"a@b.co","name":"A"}`, "", 422, "password"},
		{"bad email", "/api/v1/users", `{"email":"not-an-email","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		// Addresses no mail reaches, which mail.ParseAddress takes.
		{"65-byte local part", "/api/v1/users", `{"email":"` + strings.Repeat("a", 65) + `@b.co","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		{"domain literal", "/api/v1/users", `{"email":"a@[127.0.0.1]","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		{"underscore in domain", "/api/v1/users", `{"email":"a@b_c.co","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		{"64-byte domain label", "/api/v1/users", `{"email":"a@` + strings.Repeat("b", 64) + `.co","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		{"short password", "/api/v1/users", `{"email":"a@b.co","password":"short","name":"A"}`, "", 422, "password"},
		{"common password", "/api/v1/users", `{"email":"a@b.co","password":"password123","name":"A"}`, "", 422, "password"},
		{"password with the short address", "/api/v1/users", `{"email":"ab@x.co","password":"AB@x.co!!!","name":"A"}`, "", 422, "password"},
		// The address typed with its domain in Unicode, the password holding
		// its A-label spelling (201 before).
		{"password with the address's A-labels", "/api/v1/users", `{"email":"ab@b\u00fccher.de","password":"AB@XN--BCHER-KVA.DE!","name":"A"}`, "", 422, "password"},
		// The address is stored with its final sigma folded (σοφιασ@...); the
		// password typed with it contains the local part all the same.
		{"password with the local part", "/api/v1/users", `{"email":"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2@example.gr","password":"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2-2024!","name":"A"}`, "", 422, "password"},
		{"long name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"` + strings.Repeat("n", 101) + `"}`, "", 422, "name"},
		{"oversized body", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"` + strings.Repeat("n", 2<<20) + `"}`, "", 413, ""},
		{"wrong content type", "/api/v1/sessions", `{"email":"a@b.co","password":"x"}`, "text/plain", 415, ""},
		{"login missing password", "/api/v1/sessions", `{"email":"a@b.co"}`, "", 422, "password"},
		{"refresh wrong type", "/api/v1/sessions/refresh", `{"refresh_token":7}`, "", 400, "refresh_token"},
		{"refresh token too long", "/api/v1/sessions/refresh", `{"refresh_token":"` + strings.Repeat("x", 600) + `"}`, "", 422, "refresh_token"},
		{"trailing data", "/api/v1/sessions/refresh", `{"refresh_token":"x"} {}`, "", 400, ""},
		{"null body", "/api/v1/users", `null`, "", 422, "email"},
		{"array body", "/api/v1/users", `[]`, "", 400, "body"},
		{"null fields", "/api/v1/users", `{"email":null,"password":null,"name":null}`, "", 422, "name"},
		{"empty object", "/api/v1/users", `{}`, "", 422, "password"},
		{"nested too deep", "/api/v1/users", strings.Repeat("[", 20000), "", 400, ""},
		{"NUL in email", "/api/v1/users", `{"email":"a\u0000b@b.co","password":"correct horse battery","name":"A"}`, "", 422, "email"},
		{"NUL in name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"A\u0000"}`, "", 422, "name"},
		{"C1 control in name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"A\u0085B"}`, "", 422, "name"},
		{"line separator in name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"A\u2028B"}`, "", 422, "name"},
		{"bidi override in name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"Alice\u202egpj.exe"}`, "", 422, "name"},
		// Names that show nothing: a Hangul filler (a letter, but default
		// ignorable), the braille blank, a private-use code point.
		{"Hangul filler name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"\u3164"}`, "", 422, "name"},
		{"braille blank name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"\u2800"}`, "", 422, "name"},
		{"private-use name", "/api/v1/users", `{"email":"a@b.co","password":"correct horse battery","name":"\ue000"}`, "", 422, "name"},
		{"1 MB password at sign-up", "/api/v1/users", `{"email":"a@b.co","password":"` + strings.Repeat("p", 1<<20-64) + `","name":"A"}`, "", 422, "password"},
		// Refused by length, not by a hash mismatch (401): argon2 never
		// sees it.
		{"1 MB password at login", "/api/v1/sessions", `{"email":"a@b.co","password":"` + strings.Repeat("p", 1<<20-64) + `"}`, "", 422, "password"},
		{"1 MB email at login", "/api/v1/sessions", `{"email":"` + strings.Repeat("e", 1<<20-64) + `","password":"x"}`, "", 422, "email"},
		// A fresh address each run: the attempt counts against it in the
		// shared Redis.
		{"NUL in login email", "/api/v1/sessions", `{"email":"\u0000` + uniqEmail() + `","password":"correct horse battery"}`, "", 401, ""},
		{"refresh garbage", "/api/v1/sessions/refresh", `{"refresh_token":"\u0000\ud83d\ude00 not a token"}`, "", 401, ""},
		{"refresh empty", "/api/v1/sessions/refresh", `{"refresh_token":""}`, "", 422, "refresh_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			isProblem(t, h.do("POST", tc.path, tc.body, hdr...), tc.status, tc.field)
		})
	}
	isProblem(t, h.do("POST", "/api/v1/users", "", "Content-Type", "application/json"), 400, "")
	isProblem(t, h.do("DELETE", "/api/v1/sessions", "", "Content-Type", "application/json"), 400, "")
	isProblem(t, h.do("DELETE", "/api/v1/sessions", `{"refresh_token":null}`), 422, "refresh_token")
	isProblem(t, h.do("DELETE", "/api/v1/sessions", ""), 415, "")
	isProblem(t, h.do("GET", "/api/v1/nope", ""), 404, "")
	isProblem(t, h.do("PUT", "/api/v1/users", `{}`), 405, "")

	// One account per address however it is cased or its characters are
	// encoded: the second sign-up is a 409, and login finds the account.
	for name, variant := range map[string][2]string{
		"upper-case umlaut":  {"ÄLICE", "älice"},
		"combining accent":   {"e\u0301lise", "\u00e9lise"},
		"full-width letters": {"\uff41\uff4c\uff49", "ali"},
		"Kelvin sign":        {"\u212aim", "kim"},
		"Greek final sigma":  {"\u03a3\u039f\u03a6\u0399\u0391\u03a3", "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2"},
	} {
		t.Run(name, func(t *testing.T) {
			// Digits, not uniqEmail's hex: its letters are Latin, and sign-up
			// refuses Latin letters beside the Greek ones in one local part.
			domain := fmt.Sprintf("%d@example.com", time.Now().UnixNano())
			first := h.do("POST", "/api/v1/users", `{"email":"`+variant[0]+domain+`","password":"correct horse battery","name":"A"}`)
			if first.Code != http.StatusCreated {
				t.Fatalf("first sign-up: %d %s", first.Code, first.Body)
			}
			isProblem(t, h.do("POST", "/api/v1/users", `{"email":"`+variant[1]+domain+`","password":"correct horse battery","name":"B"}`), 409, "email")
			var second string
			if err := json.Unmarshal([]byte(`"`+variant[1]+domain+`"`), &second); err != nil {
				t.Fatal(err)
			}
			if r := h.login(second, password); r.Code != http.StatusCreated {
				t.Fatalf("login with the other form: %d %s", r.Code, r.Body)
			}
		})
	}

	// /users/me: no, malformed or foreign credentials are 401; a PATCH
	// may change the name and nothing else.
	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email)
	for name, authz := range map[string]string{"none": "", "empty bearer": "Bearer", "basic": "Basic YTpi",
		"garbage": "Bearer a.b.c", "huge": "Bearer " + strings.Repeat("a", 64<<10), "NUL": "Bearer \x00"} {
		var hdr []string
		if authz != "" {
			hdr = []string{"Authorization", authz}
		}
		t.Run("me "+name, func(t *testing.T) {
			isProblem(t, h.do("GET", "/api/v1/users/me", "", hdr...), 401, "")
			isProblem(t, h.do("PATCH", "/api/v1/users/me", `{"name":"Mallory"}`, hdr...), 401, "")
		})
	}
	bearer := []string{"Authorization", "Bearer " + access}
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"email":"x@y.z"}`, 400, "email"},
		{`{"password_hash":"$argon2id$x"}`, 400, "password_hash"},
		{`{"id":"someone-else"}`, 400, "id"},
		{`{"name":7}`, 400, "name"},
		{`{"name":"A\u0085B"}`, 422, "name"},
		{`{"name":"\u200b\u200d"}`, 422, "name"},
		{`{"name":"\u3164\u3164"}`, 422, "name"},
		{`{"name":"\uffa0"}`, 422, "name"},
		{`{"name":"` + strings.Repeat("n", 101) + `"}`, 422, "name"},
		{`{"name":"A"} x`, 400, ""},
		{`{"name":`, 400, ""},
	} {
		isProblem(t, h.do("PATCH", "/api/v1/users/me", tc.body, bearer...), tc.status, tc.field)
	}
	isProblem(t, h.do("PATCH", "/api/v1/users/me", "", bearer...), 415, "")
	// A genuine token for an account that does not exist (any more): 404.
	ghost, err := auth.NewSigner(h.key).Sign("01a24400-0000-7000-8000-000000000000", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	isProblem(t, h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+ghost), 404, "")
	isProblem(t, h.do("PATCH", "/api/v1/users/me", `{"name":"Ghost"}`, "Authorization", "Bearer "+ghost), 404, "")
	// Nothing to change is not an error, and changes nothing.
	for _, body := range []string{`{}`, `{"name":null}`} {
		r := h.do("PATCH", "/api/v1/users/me", body, bearer...)
		if r.Code != http.StatusOK || r.json(t)["name"] != "Alice" || r.json(t)["email"] != email {
			t.Fatalf("PATCH %s: %d %s", body, r.Code, r.Body)
		}
	}
	// None of it was an internal error (the logs do hold the sign-ups).
	if logs := h.logs.String(); !strings.Contains(logs, `"level":"INFO"`) || strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("hostile input logged an error:\n%s", h.logs.String())
	}
}

// JWTs that are forged, altered or stale get 401 on a protected route.
func TestForgedTokensAre401(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	id := h.register(email)["id"].(string)
	access, _ := h.tokens(email)
	parts := strings.Split(access, ".")
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)

	sign := func(method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, claims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	claims := func(exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"sub": id, "iss": auth.Issuer, "iat": time.Now().Add(-time.Hour).Unix(), "exp": exp.Unix()}
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	altered := base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(id), []byte("00000000-0000-0000-0000-000000000000"), 1))

	cases := map[string]string{
		"changed payload": parts[0] + "." + altered + "." + parts[2],
		"alg none":        sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, h.key.Kid, claims(time.Now().Add(time.Minute))),
		"unknown kid":     sign(jwt.SigningMethodEdDSA, stranger, "unknown-kid", claims(time.Now().Add(time.Minute))),
		"wrong key":       sign(jwt.SigningMethodEdDSA, stranger, h.key.Kid, claims(time.Now().Add(time.Minute))),
		"past exp":        sign(jwt.SigningMethodEdDSA, h.key.Private, h.key.Kid, claims(time.Now().Add(-time.Minute))),
		"HS256 with the public key": sign(jwt.SigningMethodHS256, []byte(h.key.Private.Public().(ed25519.PublicKey)), h.key.Kid,
			claims(time.Now().Add(time.Minute))),
	}
	// Control: the same construction with the right key and a future exp passes,
	// so each 401 below is about the one thing that was changed.
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+sign(jwt.SigningMethodEdDSA, h.key.Private, h.key.Kid, claims(time.Now().Add(time.Minute)))); r.Code != 200 {
		t.Fatalf("control token: %d %s", r.Code, r.Body)
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			isProblem(t, h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+tok), 401, "")
		})
	}
}

// The sixth rapid failed login for an account answers 429 with Retry-After,
// and so does the right password while the account is throttled.
func TestSixthRapidFailedLoginIs429(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	for i := range 5 {
		isProblem(t, h.login(email, fmt.Sprintf("wrong password %d", i)), 401, "")
	}
	r := h.login(email, "wrong password 6")
	isProblem(t, r, 429, "")
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After = %q", ra)
	}
	checkRateLimitHeaders(t, r, `"login-account";q=5;w=300`, `"login-account";r=0;t=`)
	isProblem(t, h.login(email, password), 429, "")

	// Unknown accounts count too (no enumeration by throttling behaviour).
	ghost := uniqEmail()
	for range 5 {
		isProblem(t, h.login(ghost, password), 401, "")
	}
	isProblem(t, h.login(ghost, password), 429, "")
}

func TestPerIPLimit(t *testing.T) {
	h := newHarness(t, map[string]string{"LOGIN_IP_ATTEMPTS": "5"})
	for range 5 {
		isProblem(t, h.login(uniqEmail(), password), 401, "")
	}
	isProblem(t, h.login(uniqEmail(), password), 429, "")
	h.ip = randomIP()
	isProblem(t, h.login(uniqEmail(), password), 401, "")
}

// Sign-ups are bounded per client IP: each costs an argon2id hash and an
// account, and nothing but the gateway's general per-IP rate (100/s) bounded
// them, so one client could fill the table and keep the hashing slots that
// logins wait for busy. Past SIGNUP_IP_ATTEMPTS the answer is 429 with
// Retry-After and the RateLimit headers, and nothing is stored; a request
// refused by validation costs nothing and is not counted, and another
// address is not affected.
func TestSignupsPerIPAreLimited(t *testing.T) {
	h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "3"})
	isProblem(t, h.do("POST", "/api/v1/users", `{"email":"not-an-email","password":"correct horse battery","name":"A"}`), 422, "email")
	for range 3 {
		h.register(uniqEmail())
	}
	email := uniqEmail()
	r := h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"Alice"}`, email, password))
	isProblem(t, r, http.StatusTooManyRequests, "")
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After = %q", ra)
	}
	checkRateLimitHeaders(t, r, `"signup-ip";q=3;w=300`, `"signup-ip";r=0;t=`)
	checkDocumented(t, "POST /api/v1/users", "past the IP's quota", documentedAnswers(t)["POST /api/v1/users"], r)
	var n int64
	if err := h.svc.DB.Table("users").Where("email = ?", email).Count(&n).Error; err != nil || n != 0 {
		t.Fatalf("a refused sign-up stored %d accounts (%v)", n, err)
	}
	h.ip = randomIP()
	h.register(email)
}

// checkRateLimitHeaders fails unless r carries RateLimit-Policy policy and a
// RateLimit starting with limit (pkg/limit's middleware's form), as a 429 of
// the gateway's own limits does.
func checkRateLimitHeaders(t *testing.T, r response, policy, limit string) {
	t.Helper()
	if got := r.Header.Get("RateLimit-Policy"); got != policy {
		t.Errorf("RateLimit-Policy = %q, want %q", got, policy)
	}
	if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, limit) || got == limit {
		t.Errorf("RateLimit = %q, want %q and the seconds to a full quota", got, limit)
	}
}

// Sign-ups and log ins from one IP have quotas of their own, set by
// variables of their own: an office whose burst of sign-ups used its quota
// can still log in, and a guesser who used the login quota cannot thereby
// keep that address from signing up (nor sign up any more than before).
func TestSignupAndLoginQuotasAreApart(t *testing.T) {
	t.Run("sign-ups used up", func(t *testing.T) {
		h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "2", "LOGIN_IP_ATTEMPTS": "3"})
		first := uniqEmail()
		h.register(first)
		h.register(uniqEmail())
		isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"A"}`, uniqEmail(), password)), 429, "")
		for range 3 {
			if r := h.login(first, password); r.Code != http.StatusCreated {
				t.Fatalf("log in after the sign-ups' quota was used: %d %s", r.Code, r.Body)
			}
		}
		r := h.login(first, password)
		isProblem(t, r, 429, "")
		checkRateLimitHeaders(t, r, `"login-ip";q=3;w=300`, `"login-ip";r=0;t=`)
	})
	t.Run("log ins used up", func(t *testing.T) {
		h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "3", "LOGIN_IP_ATTEMPTS": "2"})
		for range 2 {
			isProblem(t, h.login(uniqEmail(), password), 401, "")
		}
		isProblem(t, h.login(uniqEmail(), password), 429, "")
		for range 3 {
			h.register(uniqEmail())
		}
		isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"A"}`, uniqEmail(), password)), 429, "")
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	_, first := h.tokens(email)
	refresh := func(tok string) response {
		return h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, tok))
	}
	r := refresh(first)
	if r.Code != 200 || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("refresh: %d %v %s", r.Code, r.Header, r.Body)
	}
	second := r.json(t)["refresh_token"].(string)
	access := r.json(t)["access_token"].(string)
	if second == first {
		t.Fatal("not rotated")
	}
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.Code != 200 {
		t.Fatalf("access token from refresh: %d", r.Code)
	}
	r = refresh(second)
	third := r.json(t)["refresh_token"].(string)

	// Reuse of the first token: refused, and the whole family dies.
	isProblem(t, refresh(first), 401, "")
	isProblem(t, refresh(third), 401, "")
	if !strings.Contains(h.logs.String(), "refresh token reused") {
		t.Fatal("reuse not logged")
	}

	// Logout revokes a family; a second logout is still 204.
	_, other := h.tokens(email)
	if r := h.do("DELETE", "/api/v1/sessions", fmt.Sprintf(`{"refresh_token":%q}`, other)); r.Code != 204 {
		t.Fatalf("logout: %d %s", r.Code, r.Body)
	}
	if r := h.do("DELETE", "/api/v1/sessions", fmt.Sprintf(`{"refresh_token":%q}`, other)); r.Code != 204 {
		t.Fatalf("second logout: %d", r.Code)
	}
	isProblem(t, refresh(other), 401, "")
	isProblem(t, refresh("never-issued"), 401, "")
	isProblem(t, refresh(other[:len(other)/2]), 401, "") // truncated
	isProblem(t, refresh(other+"A"), 401, "")            // extended

	// Stored as SHA-256, never in clear.
	var clear int64
	h.svc.DB.Table("refresh_tokens").Where("token_hash IN ?", []string{first, second, third, other}).Count(&clear)
	if clear != 0 {
		t.Fatal("refresh token stored in clear")
	}
}

// Drive every endpoint, including failures, then look for the password hash
// (and the password) in every response and every log line.
func TestPasswordHashNeverLeaves(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	id := h.register(email)["id"].(string)
	h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"dup"}`, email, password))
	access, refresh := h.tokens(email)
	h.login(email, "wrong password!")
	h.login(email, strings.Repeat(password, 40000)) // refused for its length: not echoed either
	h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access)
	h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access)
	h.do("PATCH", "/api/v1/users/me", `{"name":"New"}`, "Authorization", "Bearer "+access)
	h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh))
	h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh))
	h.do("GET", "/.well-known/jwks.json", "")

	var hash string
	if err := h.svc.DB.Table("users").Select("password_hash").Where("id = ?", id).Scan(&hash).Error; err != nil || !strings.HasPrefix(hash, "$argon2id$") {
		t.Fatalf("stored hash %q: %v", hash, err)
	}
	segs := strings.Split(hash, "$")
	salt, digest := segs[4], segs[5]
	cached := h.svc.Redis.Get(t.Context(), "user:profile:"+id).Val()
	var outbox []string
	h.svc.DB.Table("outbox").Select("payload").Scan(&outbox)

	places := map[string]string{"logs": h.logs.String(), "profile cache": cached, "outbox": strings.Join(outbox, "\n")}
	for i, b := range h.bodies {
		places[fmt.Sprintf("response %d", i)] = b
	}
	if !strings.Contains(places["logs"], id) {
		t.Fatal("logs captured nothing about the user: the scan would prove nothing")
	}
	for where, text := range places {
		for what, secret := range map[string]string{"hash": digest, "salt": salt, "argon2 marker": "$argon2id$", "password": password} {
			if strings.Contains(text, secret) {
				t.Errorf("%s found in %s", what, where)
			}
		}
	}
	// The tokens are answers, but they must go nowhere else: a refresh
	// token in a log is a session for whoever reads it (the reuse above
	// was logged, by ids).
	if !strings.Contains(places["logs"], "refresh token reused") {
		t.Fatal("the reuse was not logged: the scan would prove nothing")
	}
	for where, text := range map[string]string{"logs": places["logs"], "profile cache": cached, "outbox": places["outbox"]} {
		for what, secret := range map[string]string{"refresh token": refresh, "access token": access} {
			if strings.Contains(text, secret) {
				t.Errorf("%s found in %s", what, where)
			}
		}
	}
}

// The embedded mode runs the same service on SQLite: migrations, sign-up,
// login and the profile all work there too.
func TestServiceOnSQLite(t *testing.T) {
	h := newHarness(t, map[string]string{"DATABASE_URL": "sqlite://" + t.TempDir() + "/user.db"})
	email := uniqEmail()
	h.register(email)
	isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"B"}`, email, password)), 409, "email")
	access, refresh := h.tokens(email)
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.Code != 200 {
		t.Fatalf("me: %d %s", r.Code, r.Body)
	}
	r := h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh))
	if r.Code != 200 {
		t.Fatalf("refresh: %d %s", r.Code, r.Body)
	}
	isProblem(t, h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh)), 401, "")
	if r := h.do("GET", "/readyz", ""); r.Code != 200 {
		t.Fatalf("readyz: %d %s", r.Code, r.Body)
	}
}

// A dependency that is down fails New with an error, not a panic, and leaves
// nothing open.
func TestNewFailsCleanlyWhenDatabaseIsDown(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	t.Setenv("AUTH_DEV_KEYS", "true")
	var cfg config.Config
	if err := pkgconfig.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	if svc, err := service.New(t.Context(), cfg, service.Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		_ = svc.Stop()
		t.Fatal("New succeeded without a database")
	}
}

// A login the caller's deadline cuts short (X-Request-Timeout-Ms, which the gateway sends; argon2id alone outlasts
// 1 ms) is a 504, not a 500 logged as a server fault, nor a 503 a gateway would count against this upstream though its
// own client chose the deadline.
func TestLoginPastTheCallersDeadlineIsNoServerError(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	r := h.do("POST", "/api/v1/sessions", fmt.Sprintf(`{"email":%q,"password":%q}`, email, password), "X-Request-Timeout-Ms", "1")
	isProblem(t, r, http.StatusGatewayTimeout, "")
}

// The timestamps a sign-up or a PATCH answers with are the ones every later
// read returns. They were the clock's nanoseconds, and PostgreSQL keeps
// microseconds, so GET /users/me reported another created_at for the same
// account, and another updated_at than the PATCH that set it.
func TestProfileTimestampsAgreeAcrossResponses(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"PostgreSQL": nil, "SQLite": {"DATABASE_URL": "sqlite://" + t.TempDir() + "/user.db"},
	} {
		t.Run(name, func(t *testing.T) { profileTimestampsAgree(t, newHarness(t, env)) })
	}
}

func profileTimestampsAgree(t *testing.T, h *harness) {
	email := uniqEmail()
	registered := h.register(email)
	access, _ := h.tokens(email)
	me := func() map[string]any {
		r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access)
		if r.Code != http.StatusOK {
			t.Fatalf("me: %d %s", r.Code, r.Body)
		}
		return r.json(t)
	}
	for i := range 2 { // a cache miss (read from PostgreSQL), then a hit
		if got := me(); got["created_at"] != registered["created_at"] || got["updated_at"] != registered["updated_at"] {
			t.Fatalf("GET %d: created_at %v, updated_at %v; the sign-up answered %v, %v", i+1,
				got["created_at"], got["updated_at"], registered["created_at"], registered["updated_at"])
		}
	}
	r := h.do("PATCH", "/api/v1/users/me", `{"name":"Alice Liddell"}`, "Authorization", "Bearer "+access)
	if r.Code != http.StatusOK {
		t.Fatalf("patch: %d %s", r.Code, r.Body)
	}
	patched := r.json(t)
	if got := me(); got["updated_at"] != patched["updated_at"] || got["created_at"] != registered["created_at"] {
		t.Fatalf("GET after PATCH: updated_at %v, created_at %v; the PATCH answered %v", got["updated_at"], got["created_at"], patched["updated_at"])
	}
}

// Key rotation: with AUTH_PREVIOUS_KEY set, the JWKS publishes the current
// key first and the previous one after it, new tokens name the current key,
// and tokens the previous key signed keep working; once the previous key is
// removed from the configuration, its tokens are refused.
func TestKeyRotation(t *testing.T) {
	current, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	previous, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := func(keys ...auth.Key) map[string]string {
		vars := map[string]string{"AUTH_PREVIOUS_KEY": ""} // t.Setenv keeps the last harness's until the test ends
		for i, name := range []string{"AUTH_SIGNING_KEY", "AUTH_PREVIOUS_KEY"}[:len(keys)] {
			b64, err := auth.MarshalKey(keys[i])
			if err != nil {
				t.Fatal(err)
			}
			vars[name] = b64
		}
		return vars
	}
	kid := func(token string) string {
		header, _, _ := strings.Cut(token, ".")
		b, _ := base64.RawURLEncoding.DecodeString(header)
		var h struct{ Kid string }
		_ = json.Unmarshal(b, &h)
		return h.Kid
	}

	rotating := newHarness(t, env(current, previous))
	var jwks struct {
		Keys []struct{ Kid string } `json:"keys"`
	}
	if err := json.Unmarshal(rotating.do("GET", "/.well-known/jwks.json", "").Body, &jwks); err != nil ||
		len(jwks.Keys) != 2 || jwks.Keys[0].Kid != current.Kid || jwks.Keys[1].Kid != previous.Kid {
		t.Fatalf("jwks kids = %+v (%v), want %s then %s", jwks.Keys, err, current.Kid, previous.Kid)
	}
	email := uniqEmail()
	id := rotating.register(email)["id"].(string)
	if access, _ := rotating.tokens(email); kid(access) != current.Kid {
		t.Fatalf("a new token names kid %q, want the current key's %q", kid(access), current.Kid)
	}
	old, err := auth.NewSigner(previous).Sign(id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r := rotating.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+old); r.Code != http.StatusOK {
		t.Fatalf("a token of the previous key during the rotation: %d %s", r.Code, r.Body)
	}

	rotated := newHarness(t, env(current))
	id = rotated.register(email)["id"].(string)
	old, err = auth.NewSigner(previous).Sign(id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	isProblem(t, rotated.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+old), http.StatusUnauthorized, "")
	if access, _ := rotated.tokens(email); kid(access) != current.Kid {
		t.Fatalf("after the rotation a new token names kid %q", kid(access))
	}
}

// A logout the service has received revokes the family even when its client
// goes away at once (a client logging out as it closes rarely waits for the
// answer) or its deadline passes: the revocation ran on the request's
// context, so it was cancelled with it, and the session lived on.
func TestLogoutOutlivesItsCaller(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for name, ended := range map[string]context.Context{"client gone": gone, "deadline passed": expired} {
		_, refresh := h.tokens(email)
		if err := h.svc.App.Logout.Handle(ended, refresh); err != nil {
			t.Errorf("%s: logout: %v", name, err)
		}
		isProblem(t, h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh)), http.StatusUnauthorized, "")
	}
}

// Passwords are compared in NFKC over HTTP, on PostgreSQL and argon2id: an
// account registered with "é" as one code point logs in with "e" and a
// combining accent, and one whose hash predates normalisation (of the NFD
// bytes) logs in as before and is stored again as the hash of the NFC form.
func TestPasswordsAreComparedNormalised(t *testing.T) {
	h := newHarness(t, nil)
	const nfc, nfd = "caf\u00e9 con le\u00f1a y m\u00e1s", "cafe\u0301 con len\u0303a y ma\u0301s"
	email := uniqEmail()
	r := h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"Alice"}`, email, nfc))
	if r.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", r.Code, r.Body)
	}
	if r := h.login(email, nfd); r.Code != http.StatusCreated {
		t.Fatalf("log in with the NFD form: %d %s", r.Code, r.Body)
	}

	hasher := adapters.NewArgon2(adapters.Argon2Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	old, err := hasher.Hash(t.Context(), nfd)
	if err != nil {
		t.Fatal(err)
	}
	id := r.json(t)["id"].(string)
	if err := h.svc.DB.Exec("UPDATE users SET password_hash = ? WHERE id = ?", old, id).Error; err != nil {
		t.Fatal(err)
	}
	if r := h.login(email, nfd); r.Code != http.StatusCreated {
		t.Fatalf("log in with a hash of the NFD bytes: %d %s", r.Code, r.Body)
	}
	var stored string
	if err := h.svc.DB.Raw("SELECT password_hash FROM users WHERE id = ?", id).Scan(&stored).Error; err != nil {
		t.Fatal(err)
	}
	if ok, err := hasher.Verify(t.Context(), nfc, stored); err != nil || !ok || stored == old {
		t.Fatalf("the hash was not replaced by one of the NFC form (%v %v)", ok, err)
	}
	if r := h.login(email, nfc); r.Code != http.StatusCreated {
		t.Fatalf("log in with the NFC form after the upgrade: %d %s", r.Code, r.Body)
	}
}

// TestSubjectWithNULIs401: a validly signed token whose sub holds a NUL (no id this service issues; PostgreSQL's text
// cannot hold one) names nobody: 401, as any other token naming no possible user, and no server error logged.
func TestSubjectWithNULIs401(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	id := h.register(email)["id"].(string)
	for _, sub := range []string{id + "\x00", "\x00"} {
		tok, err := auth.NewSigner(h.key).Sign(sub, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		isProblem(t, h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+tok), 401, "")
		isProblem(t, h.do("PATCH", "/api/v1/users/me", `{"name":"Mallory"}`, "Authorization", "Bearer "+tok), 401, "")
	}
	if logs := h.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("a NUL subject logged an error:\n%s", logs)
	}
}
