package limit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fullRedis starts a private redis-server as the deploy stacks run theirs (maxmemory-policy noeviction) with a 2 MB
// limit, fills it until it refuses writes, and returns a client of it. The shared test Redis is never touched. It
// listens on a Unix socket in a directory of its own, so no port is taken from anyone. redis-server comes from the
// PATH, as scripts/deps.sh finds it. The same idea as services/user's adapter tests, which this module cannot import.
func fullRedis(t *testing.T) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for a private full Redis (scripts/deps.sh up installs it, or apt-get install redis-server): %v", err)
	}
	dir, err := os.MkdirTemp("", "redis") // short: a Unix socket path is limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--dir", dir,
		"--maxmemory", "2mb", "--maxmemory-policy", "noeviction", "--save", "", "--appendonly", "no")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("private redis-server did not answer within 10s: %s", out.String())
		}
	}
	// Large values first, then small ones: a refused large write only says that its own argument did not fit.
	for _, size := range []int{4096, 16} {
		value := strings.Repeat("x", size)
		for i := 0; ; i++ {
			err := rdb.Set(ctx, "fill:"+strconv.Itoa(size)+":"+strconv.Itoa(i), value, 0).Err()
			if err != nil && strings.HasPrefix(err.Error(), "OOM") {
				break
			}
			if err != nil {
				t.Fatalf("filling the private Redis: %v", err)
			}
			if i*size > 4<<20 { // 4 MB written into a 2 MB Redis
				t.Fatal("the private Redis never refused a write: is maxmemory in force?")
			}
		}
	}
	return rdb
}

// A full Redis answers, and refuses the limiter's write (OOM under noeviction): the log and the fallback counter say
// it refused, not that it was unreachable, which would send an operator after the network instead of its memory.
func TestRedisFullFallsBackAndSaysRefused(t *testing.T) {
	rdb := fullRedis(t)
	var logs bytes.Buffer
	name := fmt.Sprintf("full-%d", time.Now().UnixNano())
	l := NewRedis(rdb, Rate{Count: 100, Period: time.Minute, Burst: 20}, 4,
		Name(name), Logger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for range 10 {
		if _, err := l.Allow(context.Background(), "k"); err != nil {
			t.Fatalf("a full Redis must not surface as an error: %v", err)
		}
	}
	if !l.Degraded() {
		t.Fatal("Degraded() false on a Redis refusing every write")
	}
	if strings.Contains(logs.String(), "unreachable") || !strings.Contains(logs.String(), "redis refused") {
		t.Fatalf("the log should say Redis refused the call, not that it was unreachable:\n%s", logs.String())
	}
	if got := metricValueWith(t, "shanhai.limit.fallback.decisions", name, "refused"); got != 10 {
		t.Fatalf("fallback decisions with reason=refused: %d, want 10", got)
	}
}
