package startgc

import (
	"context"
	"errors"
	"os"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

func gogc(t *testing.T) int {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// One test, because Ready is once per process: a failed step keeps the
// collector held, the last successful step of a set restores it Linger
// later (not at once: its first collection would run beside the first
// ready answer).
func TestStepsRestoreWhenAllSucceeded(t *testing.T) {
	if v, set := os.LookupEnv("GOGC"); set {
		if Held() {
			t.Fatal("GOGC is set in the environment, but the collector is held back")
		}
		if n, err := strconv.Atoi(v); err == nil && gogc(t) != n {
			t.Fatalf("GOGC=%s in the environment, runtime has %d", v, gogc(t))
		}
		return
	}
	if !Held() || gogc(t) != Percent {
		t.Fatalf("at start: held %v, GOGC %d; want held at %d", Held(), gogc(t), Percent)
	}
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	boom := errors.New("boom")

	failing := Steps(ok, func(context.Context) error { return boom })
	if err := failing[1](ctx); !errors.Is(err, boom) {
		t.Fatalf("step error %v, want %v", err, boom)
	}
	if err := failing[0](ctx); err != nil {
		t.Fatal(err)
	}
	if !Held() {
		t.Fatal("restored although a step failed")
	}

	steps := Steps(ok, ok)
	if err := steps[0](ctx); err != nil || !Held() {
		t.Fatalf("after one of two steps: err %v, held %v; want nil, true", err, Held())
	}
	if err := steps[1](ctx); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	if !Held() || gogc(t) != Percent {
		t.Fatalf("just after both steps: held %v, GOGC %d; want still held at %d until Linger or Ready", Held(), gogc(t), Percent)
	}
	for Held() && time.Since(done) < 10*Linger {
		time.Sleep(10 * time.Millisecond)
	}
	if Held() || gogc(t) != 100 {
		t.Fatalf("%s after both steps: held %v, GOGC %d; want restored to 100", time.Since(done), Held(), gogc(t))
	}
	if waited := time.Since(done); waited < Linger {
		t.Fatalf("restored %s after both steps, before Linger (%s)", waited, Linger)
	}
	Ready() // a second call changes nothing
	if gogc(t) != 100 {
		t.Fatalf("GOGC %d after a second Ready", gogc(t))
	}
}
