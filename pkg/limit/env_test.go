package limit

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// redisClient connects to the shared test Redis; testenv fails the test
// (never skips) when it is not running.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	url := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", url, err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", url, err)
	}
	return rdb
}
