package limit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// unansweredRedis is a client of a Redis that accepts every connection and
// never writes a byte (testenv.Hung).
func unansweredRedis(t *testing.T) *redis.Client {
	t.Helper()
	// Default options, as services build them: ContextTimeoutEnabled is false,
	// so the client itself ignores every context deadline on the socket.
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Hung(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// A request with a deadline (every request has one: pkg/server applies
// X-Request-Timeout-Ms) must get the local share's decision from a Redis that
// never answers, not an error once the client's own read timeout outlives the
// deadline.
func TestRedisThatNeverAnswersFallsBackToLocalShare(t *testing.T) {
	rdb := unansweredRedis(t)
	name := fmt.Sprintf("unanswered-%d", time.Now().UnixNano()) // its own counter under -count
	var logs bytes.Buffer
	// 100/min with burst 20 across 4 replicas: a burst of 5 each.
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(name), Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	allowed := 0
	for i := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d, err := l.Allow(ctx, "k")
		cancel()
		if err != nil {
			t.Fatalf("decision %d: a Redis that never answers must not surface as an error: %v", i, err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d of 8 with Redis silent, want the local share 5", allowed)
	}
	if !l.Degraded() {
		t.Fatal("Degraded() false with Redis silent")
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Fatalf("logged the switch %d times, want once:\n%s", n, logs.String())
	}
	if got := metricValue(t, "shanhai.limit.fallback.decisions", name); got != 8 {
		t.Fatalf("fallback counter %d, want 8", got)
	}
}

// When the caller gives up before Redis answers, that is the caller's
// cancellation: an error, and no reason to count Redis as down.
func TestRedisCallerDeadlineFirstIsAnErrorNotAnOutage(t *testing.T) {
	rdb := unansweredRedis(t)
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute}, 1, Name("caller-first"), CallTimeout(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := l.Allow(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Allow past the caller's deadline returned %v, want context.DeadlineExceeded", err)
	}
	if l.Degraded() {
		t.Fatal("the caller's own deadline marked Redis down")
	}
}
