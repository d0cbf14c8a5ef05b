package service_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// cutProxy forwards TCP to the real Redis until cut: then it drops every
// connection and closes the ones it accepts, as a network partition between
// one replica and Redis does, while Redis itself keeps what it holds.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

// cut drops every connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestProfileChangedWhileRedisWasAwayIsNotServedStale: a PATCH whose cache
// invalidation cannot reach Redis (a partition, a stall past the 250 ms
// timeouts) still commits; once Redis answers again, GET /users/me must give
// the new profile, not the one Redis still holds from before the change:
// at once on the replica that made the change, and soon (not after the
// 5 minute TTL) on another replica, which reads Redis.
func TestProfileChangedWhileRedisWasAwayIsNotServedStale(t *testing.T) {
	redisURL := testenv.Redis(t)
	target := strings.TrimPrefix(redisURL, "redis://")
	target, _, _ = strings.Cut(target, "/")
	proxy := newCutProxy(t, target)
	h := newHarness(t, map[string]string{"REDIS_URL": strings.Replace(redisURL, target, proxy.ln.Addr().String(), 1)})
	// A second replica on the same database and key, whose Redis stays
	// reachable throughout.
	other := newHarness(t, map[string]string{"DATABASE_URL": os.Getenv("DATABASE_URL"), "AUTH_SIGNING_KEY": os.Getenv("AUTH_SIGNING_KEY")})

	// Two accounts: the first is read back on the replica that changed it,
	// the second only on the other one.
	type account struct {
		key, name string
		bearer    []string
	}
	accounts := make([]account, 2)
	for i := range accounts {
		email := uniqEmail()
		p := h.register(email)
		access, _ := h.tokens(email)
		a := account{key: "user:profile:" + p["id"].(string), name: fmt.Sprintf("Alice %d", i), bearer: []string{"Authorization", "Bearer " + access}}
		accounts[i] = a
		// Cached while Redis answers.
		if r := h.do("GET", "/api/v1/users/me", "", a.bearer...); r.Code != 200 || r.json(t)["name"] != "Alice" {
			t.Fatalf("GET /users/me: %d %s", r.Code, r.Body)
		}
		if n, err := other.svc.Redis.Exists(t.Context(), a.key).Result(); err != nil || n != 1 {
			t.Fatalf("profile not cached before the change: %d, %v", n, err)
		}
	}

	proxy.cut()
	for _, a := range accounts {
		if r := h.do("PATCH", "/api/v1/users/me", `{"name":"`+a.name+`"}`, a.bearer...); r.Code != 200 || r.json(t)["name"] != a.name {
			t.Fatalf("PATCH /users/me with Redis away: %d %s", r.Code, r.Body)
		}
	}
	// While Redis is away the database answers.
	if r := h.do("GET", "/api/v1/users/me", "", accounts[0].bearer...); r.Code != 200 || r.json(t)["name"] != accounts[0].name {
		t.Fatalf("GET /users/me with Redis away: %d %s", r.Code, r.Body)
	}
	proxy.restore()

	// go-redis may still hold a pool connection the cut closed: a command on
	// it fails once and the next dials. Whatever the read path, every answer
	// from here on is the new profile.
	for i := range 5 {
		r := h.do("GET", "/api/v1/users/me", "", accounts[0].bearer...)
		if r.Code != 200 || r.json(t)["name"] != accounts[0].name {
			t.Fatalf("GET /users/me #%d after Redis came back: %d %s, want the changed profile", i+1, r.Code, r.Body)
		}
	}
	// The other replica reads Redis, not this one's pending invalidation: it
	// gets the new profile once the retry (no read on this replica) reaches
	// Redis.
	runtest.Eventually(t, 10*time.Second, "the other replica serving the changed profile", func() bool {
		r := other.do("GET", "/api/v1/users/me", "", accounts[1].bearer...)
		return r.Code == 200 && r.json(t)["name"] == accounts[1].name
	})
	for _, a := range accounts {
		cached, err := other.svc.Redis.Get(t.Context(), a.key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("read the cache: %v", err)
		}
		if strings.Contains(cached, `"name":"Alice"`) {
			t.Fatalf("Redis still holds the profile from before the change: %s", cached)
		}
	}
}
