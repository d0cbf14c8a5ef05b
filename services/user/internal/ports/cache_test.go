package ports_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// The profile, an address and a name, is not written to the client's HTTP
// cache: "private, no-cache" let a browser keep it on disk after its user
// logged out (on a shared computer, for the next user to find), and bought
// nothing for it, since without a validator (ETag, Last-Modified) a stored
// answer could never be revalidated, only fetched again in full.
func TestProfileIsNotStoredByTheClient(t *testing.T) {
	gin.SetMode(gin.TestMode)
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
	r := gin.New()
	a := app.New(app.Deps{Profiles: cachedProfile{}, Logger: slog.New(slog.DiscardHandler)})
	ports.HTTP{App: a, Verifier: verifier, Logger: slog.New(slog.DiscardHandler)}.Mount(r)

	req := httptest.NewRequest(http.MethodGet, "/api/v1/users/me", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "ada@example.com") {
		t.Fatalf("GET /users/me: %d %s, want 200 with the profile", w.Code, w.Body)
	}
	cc := w.Header().Get("Cache-Control")
	if !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control %q: the profile may be stored by the client", cc)
	}
	if w.Header().Get("ETag") != "" || w.Header().Get("Last-Modified") != "" {
		t.Errorf("the answer has a validator now (%v): weigh revalidation against storing", w.Header())
	}
}

// cachedProfile is a profile cache that holds user u's profile.
type cachedProfile struct{}

func (cachedProfile) Get(_ context.Context, id string) (user.Profile, string, bool, error) {
	return user.Profile{ID: id, Email: "ada@example.com", Name: "Ada"}, "", true, nil
}
func (cachedProfile) Set(context.Context, user.Profile, string) error { return nil }
func (cachedProfile) Delete(context.Context, string) error            { return nil }
