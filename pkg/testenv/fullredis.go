package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FullRedis starts a private redis-server run as the deploy stacks run theirs (maxmemory-policy noeviction, see
// deploy/redis_test.go) with a 2 MB limit (an empty one uses about 0.9 MB), lets setup (may be nil) write to it while
// it is empty, fills it until it refuses writes, and returns a client of it: what a service meets when Redis is full.
// The shared test Redis is never touched. It listens on a Unix socket in a directory of its own, so it takes no port.
// redis-server comes from the PATH, as scripts/deps.sh finds it (installing the Debian package when missing).
func FullRedis(t testing.TB, setup func(rdb *redis.Client)) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testenv: redis-server is needed for a private full Redis: %v\n%s", err, Hint)
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
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: private redis-server did not answer within 10s: %s", out.String())
		}
	}
	if setup != nil {
		setup(rdb)
	}
	// Large values first, then small ones: a refused large write only says that its own argument did not fit, and
	// the next small one may still.
	for _, size := range []int{4096, 16} {
		value := strings.Repeat("x", size)
		for i := 0; ; i++ {
			err := rdb.Set(ctx, "fill:"+strconv.Itoa(size)+":"+strconv.Itoa(i), value, 0).Err()
			if err != nil && strings.HasPrefix(err.Error(), "OOM") {
				break
			}
			if err != nil {
				t.Fatalf("testenv: filling the private Redis: %v", err)
			}
			if i*size > 4<<20 { // 4 MB written into a 2 MB Redis
				t.Fatal("testenv: the private Redis never refused a write: is maxmemory in force?")
			}
		}
	}
	return rdb
}
