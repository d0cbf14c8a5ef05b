package limit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestRedisFallbackRemembersABoundedNumberOfKeys: while Redis is down every
// distinct key gets a bucket in the local share. It kept up to PerKey's
// default of a million, about 130 bytes each: 130 MB a limiter, in a user
// service pod of 64 MiB that runs three. A flood of made-up account names
// during an outage (or with Redis full of the limiter's keys, refusing
// writes) had the pod killed before the cap was reached.
func TestRedisFallbackRemembersABoundedNumberOfKeys(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.ClosedPort(t), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	// login-account's shape: 5 per 15 minutes over 2 replicas.
	l := NewRedis(rdb, Rate{Count: 5, Period: 15 * time.Minute}, 2, Name(fmt.Sprintf("keys-%d", time.Now().UnixNano())),
		Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))

	const flood = 2 * DefaultLocalKeys
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range flood {
		if d, err := l.Allow(context.Background(), "account:"+strconv.Itoa(i)); err != nil || !d.Allowed {
			t.Fatalf("key %d, new to the local share: %+v, %v", i, d, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if !l.Degraded() {
		t.Fatal("not degraded with Redis down")
	}
	if n := l.local.Len(); n > DefaultLocalKeys {
		t.Fatalf("the local share remembers %d keys after %d distinct ones, want at most %d (%.0f MB held)",
			n, flood, DefaultLocalKeys, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1e6)
	}
	runtime.KeepAlive(l)
}
