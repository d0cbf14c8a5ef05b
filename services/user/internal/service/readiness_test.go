package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// TestReadyWithoutRedis: the service answers without Redis (profiles from
// the database, login limits local), so a Redis outage must not fail
// readiness: failing it took every pod out of the Service at once. The
// outage is logged, and a database that is gone still fails readiness.
func TestReadyWithoutRedis(t *testing.T) {
	h := newHarness(t, map[string]string{"REDIS_URL": "redis://" + testenv.ClosedPort(t) + "/0"})
	if r := h.do("GET", "/readyz", ""); r.Code != http.StatusOK {
		t.Fatalf("/readyz with Redis down: %d %s", r.Code, r.Body)
	}

	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email)
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.Code != http.StatusOK {
		t.Fatalf("profile with Redis down: %d %s", r.Code, r.Body)
	}
	runtest.Eventually(t, 10*time.Second, "the Redis outage logged", func() bool {
		return strings.Contains(h.logs.String(), "redis unreachable")
	})

	sqlDB, err := h.svc.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", "/readyz", "")
	if r.Code != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "database") || strings.Contains(string(r.Body), "redis") {
		t.Fatalf("/readyz with the database closed: %d %s, want 503 naming the database alone", r.Code, r.Body)
	}
}

// TestReadyWithAHungRedis: a Redis that accepts connections and never
// answers does not fail readiness either. The check pings it in the
// background: a ping in the probe itself waits for the client's read
// timeout, which REDIS_URL may set (here 3 s, go-redis's default), past
// /readyz's 2 s bound on all checks, which then fails it.
func TestReadyWithAHungRedis(t *testing.T) {
	hung := testenv.Hung(t)
	h := newHarness(t, map[string]string{"REDIS_URL": "redis://" + hung + "/0?read_timeout=3s"})
	for range 2 { // the second finds the first ping still waiting
		if r := h.do("GET", "/readyz", ""); r.Code != http.StatusOK {
			t.Fatalf("/readyz with a hung Redis: %d %s", r.Code, r.Body)
		}
	}
}

// TestProfileWithAHungRedis: a profile read with a Redis that accepts and
// never answers still answers within its caller's deadline, from the
// database, as the cache's design says (a cache failure is read through).
func TestProfileWithAHungRedis(t *testing.T) {
	hung := testenv.Hung(t)
	h := newHarness(t, map[string]string{"REDIS_URL": "redis://" + hung + "/0"})
	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email)
	// A caller's deadline (the gateway's X-Request-Timeout-Ms) well above a
	// database read.
	r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access, "X-Request-Timeout-Ms", "2000")
	if r.Code != http.StatusOK {
		t.Fatalf("profile with a hung Redis: %d %s", r.Code, r.Body)
	}
}
