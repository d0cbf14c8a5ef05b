package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/session"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// In-memory stand-ins for the unit tests; the adapters have their own
// integration tests against PostgreSQL, SQLite and Redis.

type memUsers struct {
	mu   sync.Mutex
	byID map[string]user.User
}

func (m *memUsers) Add(_ context.Context, u user.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.byID {
		if o.Email == u.Email {
			return user.ErrEmailTaken
		}
	}
	m.byID[u.ID] = u
	return nil
}

func (m *memUsers) ByID(_ context.Context, id string) (user.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.byID[id]
	if !ok {
		return user.User{}, user.ErrNotFound
	}
	return u, nil
}

func (m *memUsers) ByEmail(_ context.Context, email string) (user.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.byID {
		if u.Email == email {
			return u, nil
		}
	}
	return user.User{}, user.ErrNotFound
}

func (m *memUsers) EmailTaken(_ context.Context, email string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.byID {
		if u.Email == email || user.VisibleEmail(u.Email) == email {
			return true, nil
		}
	}
	return false, nil
}

func (m *memUsers) Update(_ context.Context, id string, fn func(*user.User) error) (user.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.byID[id]
	if !ok {
		return user.User{}, user.ErrNotFound
	}
	if err := fn(&u); err != nil {
		return user.User{}, err
	}
	m.byID[id] = u
	return u, nil
}

func (m *memUsers) SetPasswordHash(_ context.Context, id, old, hash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.byID[id]
	if !ok {
		return user.ErrNotFound
	}
	if u.PasswordHash != old {
		return user.ErrHashChanged
	}
	u.PasswordHash = hash
	m.byID[id] = u
	return nil
}

type memCache struct {
	mu      sync.Mutex
	m       map[string]user.Profile
	gens    map[string]int
	gets    int
	deletes int
}

func (c *memCache) Get(_ context.Context, id string) (user.Profile, string, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	p, ok := c.m[id]
	return p, strconv.Itoa(c.gens[id]), ok, nil
}

func (c *memCache) Set(_ context.Context, p user.Profile, gen string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == strconv.Itoa(c.gens[p.ID]) {
		c.m[p.ID] = p
	}
	return nil
}

func (c *memCache) Delete(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deletes++
	delete(c.m, id)
	c.gens[id]++
	return nil
}

type memSessions struct {
	mu sync.Mutex
	m  map[string]session.RefreshToken // by hash
}

func (s *memSessions) Create(_ context.Context, t session.RefreshToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[t.Hash] = t
	return nil
}

func (s *memSessions) ByHash(_ context.Context, h string) (session.RefreshToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[h]
	if !ok {
		return session.RefreshToken{}, session.ErrNotFound
	}
	return t, nil
}

func (s *memSessions) Rotate(_ context.Context, old, next session.RefreshToken, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.m[old.Hash]
	switch {
	case cur.RevokedAt != nil:
		return session.ErrInvalid
	case cur.UsedAt != nil:
		return session.ErrSpent
	}
	cur.UsedAt = &now
	s.m[old.Hash] = cur
	s.m[next.Hash] = next
	return nil
}

func (s *memSessions) RevokeFamily(_ context.Context, family string, now time.Time) error {
	s.revoke(func(t session.RefreshToken) bool { return t.FamilyID == family }, now)
	return nil
}

// revoke revokes each token that match picks and is not revoked yet.
func (s *memSessions) revoke(match func(session.RefreshToken) bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.m {
		if match(t) && t.RevokedAt == nil {
			t.RevokedAt = &now
			s.m[h] = t
		}
	}
}

// memCredentials changes a password over memUsers and memSessions as one
// transaction would: when the revocation fails (revokeErr), the hash it
// stored is put back.
type memCredentials struct {
	users     *memUsers
	sessions  *memSessions
	revokeErr error
}

func (c *memCredentials) ReplacePassword(ctx context.Context, userID, old, hash string, now time.Time) error {
	if err := c.users.SetPasswordHash(ctx, userID, old, hash); err != nil {
		return err
	}
	if c.revokeErr != nil {
		if err := c.users.SetPasswordHash(ctx, userID, hash, old); err != nil {
			return err
		}
		return c.revokeErr
	}
	c.sessions.revoke(func(t session.RefreshToken) bool { return t.UserID == userID }, now)
	return nil
}

// plainHasher is reversible on purpose, so tests can tell it was used; it
// is never a production hasher. "old$" hashes stand for an outdated cost.
type plainHasher struct{}

func (plainHasher) Hash(_ context.Context, pw string) (string, error) { return "plain$" + pw, nil }
func (plainHasher) Verify(_ context.Context, pw, enc string) (bool, error) {
	scheme, rest, ok := strings.Cut(enc, "$")
	if !ok || (scheme != "plain" && scheme != "old") {
		return false, fmt.Errorf("unknown hash format")
	}
	return rest == pw, nil
}
func (plainHasher) NeedsRehash(enc string) bool { return !strings.HasPrefix(enc, "plain$") }

type fakeIssuer struct{}

func (fakeIssuer) Sign(sub string, ttl time.Duration) (string, error) {
	return "access-for-" + sub, nil
}

// countGuard admits n attempts per key, like a bucket that never refills.
type countGuard struct {
	mu sync.Mutex
	n  int
	m  map[string]int
}

func (g *countGuard) Admit(_ context.Context, account, ip string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range []string{"ip:" + ip, "acct:" + account} {
		if g.m[k] >= g.n {
			return &TooManyAttemptsError{What: "login attempts", RetryAfter: time.Minute}
		}
		g.m[k]++
	}
	return nil
}

// ipGuard admits n sign-ups per IP, like a bucket that never refills.
type ipGuard struct {
	mu sync.Mutex
	n  int
	m  map[string]int
}

func (g *ipGuard) Admit(_ context.Context, ip string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[ip] >= g.n {
		return &TooManyAttemptsError{What: "sign-ups", RetryAfter: time.Minute}
	}
	g.m[ip]++
	return nil
}

type fixture struct {
	app         Application
	users       *memUsers
	cache       *memCache
	sessions    *memSessions
	credentials *memCredentials
	now         time.Time
}

func newFixture() *fixture {
	f := &fixture{
		users:    &memUsers{byID: map[string]user.User{}},
		cache:    &memCache{m: map[string]user.Profile{}, gens: map[string]int{}},
		sessions: &memSessions{m: map[string]session.RefreshToken{}},
		now:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	f.credentials = &memCredentials{users: f.users, sessions: f.sessions}
	var seq int
	var mu sync.Mutex
	f.app = New(Deps{
		Users: f.users, Profiles: f.cache, Sessions: f.sessions, Credentials: f.credentials,
		Hasher: plainHasher{}, Tokens: fakeIssuer{},
		Guard:   &countGuard{n: 5, m: map[string]int{}},
		Signups: &ipGuard{n: 100, m: map[string]int{}},
		NewID:   func() string { mu.Lock(); defer mu.Unlock(); seq++; return fmt.Sprintf("id-%d", seq) },
		Now:     func() time.Time { return f.now },
	})
	return f
}
