package limit

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/redact"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// redisClient connects to the shared test Redis; testenv fails the test
// (never skips) when it is not running.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	url := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		// CI logs keep the message: the URL without its password, and not
		// url.Parse's error, which quotes it whole.
		t.Fatal(redact.Error("REDIS_URL", url, err))
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(redact.Error("redis", url, err))
	}
	return rdb
}

// fatalRecorder is a testing.TB whose Fatalf keeps the message and ends the
// goroutine, as the real one does, without failing the test that uses it.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// redisClient's failures name REDIS_URL without its password: CI logs keep
// every failure's message. The test Redis has no password, so one given is
// refused; a scheme go-redis does not take fails before connecting.
func TestRedisClientFailureShowsNoPassword(t *testing.T) {
	const secret = "s3cretpw"
	host := strings.TrimPrefix(testenv.Redis(t), "redis://")
	host, _, _ = strings.Cut(host, "/")
	for _, url := range []string{
		"redis://bob:" + secret + "@" + host + "/0",
		"http://bob:" + secret + "@" + host + "/0",
	} {
		t.Setenv("REDIS_URL", url)
		r := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			redisClient(r)
		}()
		<-done
		if r.msg == "" {
			t.Fatalf("redisClient with REDIS_URL %s did not fail", redact.URL(url))
		}
		if strings.Contains(r.msg, secret) {
			t.Errorf("redisClient's failure shows the password: %s", r.msg)
		}
	}
}
