package stream

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func TestNamesOrKeepsWhatIsSet(t *testing.T) {
	def := Names{Stream: Name, StreamSubjects: Subjects, Subject: "shanhai.orders", Durable: "payment"}
	got := Names{Durable: "private"}.Or(def)
	want := Names{Stream: Name, StreamSubjects: Subjects, Subject: "shanhai.orders", Durable: "private"}
	if got != want {
		t.Fatalf("Or = %+v, want %+v", got, want)
	}
}

func TestBackOffDoublesToACapWithFewerStepsThanDeliveries(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		maxDeliver int
		want       []time.Duration
	}{
		{0, []time.Duration{s}},
		{2, []time.Duration{s}},
		{4, []time.Duration{s, 2 * s, 4 * s}},
		{6, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s}},
		{20, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s}},
	} {
		if got := BackOff(s, tc.maxDeliver); !slices.Equal(got, tc.want) {
			t.Errorf("BackOff(1s, %d) = %v, want %v", tc.maxDeliver, got, tc.want)
		}
	}
}

func TestHeadersTakesTheFirstValue(t *testing.T) {
	got := Headers(map[string][]string{"ce_id": {"a", "b"}, "empty": {}})
	if len(got) != 1 || got["ce_id"] != "a" {
		t.Fatalf("Headers = %v", got)
	}
}

// TestEnsureCreatesOnceAndLeavesExistingAlone runs against the real NATS server.
func TestEnsureCreatesOnceAndLeavesExistingAlone(t *testing.T) {
	js, n := testStream(t, "STREAM")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := Ensure(ctx, js, n); err != nil {
		t.Fatalf("create: %v", err)
	}
	s, err := js.Stream(ctx, n.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Duplicates != 2*time.Minute || cfg.Subjects[0] != n.StreamSubjects {
		t.Fatalf("stream config %+v", cfg)
	}
	// Someone else changed it: Ensure must not rewrite their settings.
	cfg := s.CachedInfo().Config
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, js, n); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	s, _ = js.Stream(ctx, n.Stream)
	if s.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatal("Ensure rewrote an existing stream's settings")
	}
}

// testStream connects to the real NATS server and names a stream of the test's
// own (unique name and subjects), deleted when the test ends.
func testStream(t *testing.T, prefix string) (jetstream.JetStream, Names) {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close) // after the stream's deletion below (cleanups run last first)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 10)
	n := Names{Stream: "TEST_" + prefix + "_" + suffix, StreamSubjects: "t" + strings.ToLower(prefix) + suffix + ".>"}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), n.Stream) })
	return js, n
}
