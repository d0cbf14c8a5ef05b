package limit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A full Redis answers, and refuses the limiter's write (OOM under noeviction): the log and the fallback counter say
// it refused, not that it was unreachable, which would send an operator after the network instead of its memory.
func TestRedisFullFallsBackAndSaysRefused(t *testing.T) {
	rdb := testenv.FullRedis(t, nil)
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
