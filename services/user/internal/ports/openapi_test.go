package ports_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// TestOpenAPIDocumentsEveryFailure drives every route Mount serves, wired as
// pkg/server wires it (deadline.Middleware), into the answers it gives when
// its time runs out or its database is down or fails, and checks that the
// document lists each status for that operation, as problem+json, with the
// Retry-After header when the answer sends one. Every route that reaches the
// stores must answer 5xx in each of those (a route that stopped reaching them
// would no longer test anything), and a route added to Mount without a line
// here fails the test. (services/user/internal/service's
// TestOpenAPIDocumentsEveryAnswerGiven covers the server's own routes and the
// revocations that outlast their 5 s, on the real stores.)
func TestOpenAPIDocumentsEveryFailure(t *testing.T) {
	gin.SetMode(gin.TestMode)
	answers, err := openapi.ParseAnswers(ports.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer := auth.NewSigner(key)
	verifier, err := auth.NewStaticVerifier(signer.JWKS(), auth.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	access, err := signer.Sign("u", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refused := testenv.Refused(t)

	routes := []struct {
		method, path, body string
		static             bool // answers without the stores
	}{
		{"POST", "/api/v1/users", `{"email":"ada@example.com","password":"a long enough passphrase 42","name":"Ada"}`, false},
		{"POST", "/api/v1/sessions", `{"email":"ada@example.com","password":"a long enough passphrase 42"}`, false},
		{"POST", "/api/v1/sessions/refresh", `{"refresh_token":"t"}`, false},
		{"DELETE", "/api/v1/sessions", `{"refresh_token":"t"}`, false},
		{"GET", "/api/v1/users/me", "", false},
		{"PATCH", "/api/v1/users/me", `{"name":"Ada"}`, false},
		{"POST", "/api/v1/users/me/password", `{"current_password":"a long enough passphrase 42","new_password":"another long passphrase 43"}`, false},
		{"GET", "/.well-known/jwks.json", "", true},
		{"GET", "/openapi.json", "", true},
	}
	scenarios := []struct {
		name    string
		timeout string // X-Request-Timeout-Ms, "" for none
		err     func(context.Context) error
	}{
		{"the caller's deadline had passed on arrival", "0", nil},
		{"the database outlasts the caller's deadline", "20", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"an inner timeout fired with time left", "", func(context.Context) error { return fmt.Errorf("query: %w", context.DeadlineExceeded) }},
		{"the database is down", "", func(context.Context) error { return fmt.Errorf("query: %w", refused) }},
		{"the database fails otherwise", "", func(context.Context) error { return errors.New(`ERROR: relation "users" does not exist`) }},
	}
	for _, sc := range scenarios {
		r := gin.New()
		r.Use(deadline.Middleware(0))
		st := stores{sc.err}
		a := app.New(app.Deps{Users: st, Profiles: st, Sessions: st, Credentials: st, Hasher: st, Tokens: signer, Guard: admitLogins{}, Signups: admitAll{},
			Logger: slog.New(slog.DiscardHandler)})
		ports.HTTP{App: a, JWKS: signer.JWKS(), Verifier: verifier, Logger: slog.New(slog.DiscardHandler)}.Mount(r)
		if sc.timeout == "0" {
			for _, served := range r.Routes() {
				listed := false
				for _, rt := range routes {
					listed = listed || rt.method == served.Method && rt.path == served.Path
				}
				if !listed {
					t.Errorf("%s %s is served but not driven here: add it to routes", served.Method, served.Path)
				}
			}
		}
		for _, rt := range routes {
			if rt.static && sc.err != nil {
				continue
			}
			req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+access)
			if sc.timeout != "" {
				req.Header.Set(deadline.Header, sc.timeout)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			op := rt.method + " " + rt.path
			if w.Code < 500 {
				t.Errorf("%s: %s answers %d %s", sc.name, op, w.Code, w.Body)
				continue
			}
			if err := answers.Check(rt.method, rt.path, w.Code, w.Header()); err != nil {
				t.Errorf("%s: %v", sc.name, err)
			}
		}
	}
}

// stores stands in for every store and guard the use cases call: err, when
// set, is what each store call returns (given the call's context); the
// profile cache always misses and the hasher matches nothing.
type stores struct{ err func(context.Context) error }

func (s stores) fail(ctx context.Context, what string) error {
	if s.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, s.err(ctx))
}

func (s stores) Add(ctx context.Context, _ user.User) error { return s.fail(ctx, "add user") }
func (s stores) ByID(ctx context.Context, _ string) (user.User, error) {
	return user.User{}, s.fail(ctx, "user by id")
}
func (s stores) ByEmail(ctx context.Context, _ string) (user.User, error) {
	return user.User{}, s.fail(ctx, "user by email")
}
func (s stores) EmailTaken(ctx context.Context, _ string) (bool, error) {
	return false, s.fail(ctx, "look up email")
}
func (s stores) Update(ctx context.Context, _ string, _ func(*user.User) error) (user.User, error) {
	return user.User{}, s.fail(ctx, "update user")
}
func (s stores) SetPasswordHash(ctx context.Context, _, _, _ string) error {
	return s.fail(ctx, "set password hash")
}

func (s stores) Create(ctx context.Context, _ session.RefreshToken) error {
	return s.fail(ctx, "create refresh token")
}
func (s stores) ByHash(ctx context.Context, _ string) (session.RefreshToken, error) {
	return session.RefreshToken{}, s.fail(ctx, "refresh token by hash")
}
func (s stores) Rotate(ctx context.Context, _, _ session.RefreshToken, _ time.Time) error {
	return s.fail(ctx, "rotate refresh token")
}
func (s stores) RevokeFamily(ctx context.Context, _ string, _ time.Time) error {
	return s.fail(ctx, "revoke family")
}
func (s stores) ReplacePassword(ctx context.Context, _, _, _ string, _ time.Time) error {
	return s.fail(ctx, "replace password")
}

func (stores) Get(context.Context, string) (user.Profile, string, bool, error) {
	return user.Profile{}, "g", false, nil
}
func (stores) Set(context.Context, user.Profile, string) error { return nil }
func (stores) Delete(context.Context, string) error            { return nil }

func (stores) Hash(context.Context, string) (string, error)         { return "h", nil }
func (stores) Verify(context.Context, string, string) (bool, error) { return false, nil }
func (stores) NeedsRehash(string) bool                              { return false }

// admitLogins lets every login attempt through its limits.
type admitLogins struct{}

func (admitLogins) Admit(context.Context, string, string) error { return nil }
