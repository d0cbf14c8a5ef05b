package adapters_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
)

// The refresh use case on the real repositories, racing a logout or a second
// refresh: app's own tests use an in-memory fake, which cannot show what the
// repository's conditional UPDATE decides.

const reuseWarning = "refresh token reused"

// overtakenSessions is a SessionGorm whose Rotate first runs overtake to the
// end: another request that wins the race against a refresh which has
// looked its token up and found it usable, but not yet spent it.
type overtakenSessions struct {
	*adapters.SessionGorm
	overtake func()
}

func (s overtakenSessions) Rotate(ctx context.Context, old, next session.RefreshToken, now time.Time) error {
	s.overtake()
	return s.SessionGorm.Rotate(ctx, old, next, now)
}

// sessionApp is the use cases on sessions, logging to logs.
func sessionApp(t *testing.T, sessions session.Repository, logs *testenv.LogBuffer) app.Application {
	t.Helper()
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return app.New(app.Deps{Sessions: sessions, Tokens: auth.NewSigner(key),
		Logger: telemetry.NewLogger(logs, slog.LevelDebug), NewID: uuid.NewString})
}

// login stores a new family's first token for u1 and returns its secret.
func login(t *testing.T, repo *adapters.SessionGorm) (session.RefreshToken, string) {
	t.Helper()
	tok, secret, err := session.Issue(uuid.NewString(), "", "u1", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Create(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	return tok, secret
}

// A logout that revokes the family while a refresh of its current token is
// in flight ends the refresh with an invalid token, and that is all: nothing
// was presented twice. The refresh's rotation found the token revoked and
// was told "spent", so the service warned of a stolen token it had not seen
// (and revoked the family a second time).
func TestRefreshOvertakenByALogoutIsNoReuse(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		tok, secret := login(t, repo)
		logs := &testenv.LogBuffer{}
		plain := sessionApp(t, repo, logs)
		racing := sessionApp(t, overtakenSessions{repo, func() {
			if err := plain.Logout.Handle(ctx, secret); err != nil {
				t.Errorf("logout: %v", err)
			}
		}}, logs)

		if _, err := racing.Refresh.Handle(ctx, secret); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("refresh overtaken by a logout: err = %v, want ErrInvalid", err)
		}
		if !strings.Contains(logs.String(), "session ended") {
			t.Fatalf("the logout did not run:\n%s", logs)
		}
		if strings.Contains(logs.String(), reuseWarning) {
			t.Errorf("a token presented once was reported reused:\n%s", logs)
		}
		got, err := repo.ByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if got.RevokedAt == nil || got.UsedAt != nil {
			t.Fatalf("token after the logout = %+v, want revoked and never spent", got)
		}
	})
}

// A refresh overtaken by another refresh of the same token is a token
// presented twice: the loser warns and revokes the family, the successor the
// winner was given included (RFC 9700 §4.14.2).
func TestRefreshOvertakenByARefreshIsReuse(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		_, secret := login(t, repo)
		logs := &testenv.LogBuffer{}
		plain := sessionApp(t, repo, logs)
		var winner app.Tokens
		racing := sessionApp(t, overtakenSessions{repo, func() {
			var err error
			if winner, err = plain.Refresh.Handle(ctx, secret); err != nil {
				t.Errorf("the first refresh: %v", err)
			}
		}}, logs)

		if _, err := racing.Refresh.Handle(ctx, secret); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("the second refresh of one token: err = %v, want ErrInvalid", err)
		}
		if !strings.Contains(logs.String(), reuseWarning) {
			t.Errorf("a token presented twice was not reported:\n%s", logs)
		}
		if _, err := plain.Refresh.Handle(ctx, winner.RefreshToken); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("the winner's successor after the reuse: err = %v, want ErrInvalid", err)
		}
	})
}

// A spent token presented again, later, is the same reuse.
func TestRefreshReplayIsReuse(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		ctx := t.Context()
		repo := sessionRepo(t, db)
		_, secret := login(t, repo)
		logs := &testenv.LogBuffer{}
		a := sessionApp(t, repo, logs)
		next, err := a.Refresh.Handle(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), reuseWarning) {
			t.Fatalf("a first refresh was reported as reuse:\n%s", logs)
		}
		if _, err := a.Refresh.Handle(ctx, secret); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("replay: err = %v, want ErrInvalid", err)
		}
		if !strings.Contains(logs.String(), reuseWarning) {
			t.Errorf("a replayed token was not reported:\n%s", logs)
		}
		if _, err := a.Refresh.Handle(ctx, next.RefreshToken); !errors.Is(err, session.ErrInvalid) {
			t.Fatalf("the successor after the replay: err = %v, want ErrInvalid", err)
		}
	})
}
