package limit

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// TestRedisHeadersOfAFullBucketAreExact: the first request of a key finds its
// bucket full, so the answer is exact: burst-1 left, and back to full after
// one emission interval. redis_rate's script computes both in floating point
// from Redis's clock (seconds since 2017, about 3e8, kept to about 6e-8 s),
// so the remaining count came back as 8.9999998 cut to 8 at 10 per second,
// and a reset due in exactly one second as 1.000000023 s, rounded up to 2:
// every key's first answer said one request fewer, and a second longer, than
// the shared limit has. The local bucket of the same rate is exact and is
// what the headers are compared to.
func TestRedisHeadersOfAFullBucketAreExact(t *testing.T) {
	c := redisClient(t)
	key := func(c *gin.Context) string { return c.GetHeader("X-User") }
	for _, lim := range []Rate{
		{Count: 10, Period: time.Second},
		{Count: 1, Period: time.Second},
		{Count: 100, Period: time.Minute},
		{Count: 3, Period: time.Second},
		{Count: 5, Period: time.Second, Burst: 2},
		{Count: 60, Period: time.Hour, Burst: 30},
	} {
		t.Run(fmt.Sprintf("%d per %v burst %d", lim.Count, lim.Period, lim.burst()), func(t *testing.T) {
			name := fmt.Sprintf("headers-%d", time.Now().UnixNano()) // fresh keys per run
			shared := router(Middleware(NewRedis(c, lim, 1, Name(name)), key))
			local := router(Middleware(PerKey(rate.Limit(float64(lim.Count)/lim.Period.Seconds()), lim.burst()), key))
			for i := range 20 {
				user := fmt.Sprint("user-", i)
				got, want := get(shared, user), get(local, user)
				if got.Code != http.StatusOK {
					t.Fatalf("first request of %s: %d", user, got.Code)
				}
				for _, h := range []string{"RateLimit", "RateLimit-Policy"} {
					if g, w := got.Header().Get(h), want.Header().Get(h); g != w {
						t.Fatalf("first request of %s: %s %q, want %q", user, h, g, w)
					}
				}
			}
		})
	}
}
