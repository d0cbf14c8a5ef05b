package limit

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redisClient connects to the test Redis named by REDIS_URL (default: the
// deps script's port) and fails, never skips, when it does not answer.
// TODO(limit): switch to pkg/testenv.Redis once it lands.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:16379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", url, err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("redis at %s not reachable (%v): run ./scripts/deps.sh up and eval \"$(./scripts/deps.sh env)\"", url, err)
	}
	return rdb
}
