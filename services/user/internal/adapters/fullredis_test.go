package adapters_test

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

// fullRedis starts a private redis-server as the deploy stacks run theirs
// (maxmemory-policy noeviction, see deploy/redis_test.go) with a 2 MB limit (an empty one uses about 0.9 MB),
// fills it until it refuses writes, and returns a client of it after the
// caller's setup ran on the empty server. The shared test Redis is never
// touched. It listens on a Unix socket in a directory of its own, so no
// port is taken from anyone. redis-server comes from the PATH, as
// scripts/deps.sh finds it (it installs the Debian package when missing).
func fullRedis(t *testing.T, setup func(rdb *redis.Client)) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for a private full Redis (scripts/deps.sh up installs it, or apt-get install redis-server): %v", err)
	}
	// A short directory: a Unix socket path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "redis")
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
	setup(rdb)
	// Large values first, then small ones: a refused large write only says
	// that its own argument did not fit, and the next small one may still.
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
