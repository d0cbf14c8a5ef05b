package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/interrupt"
)

// Nearest-rank percentiles over 1..1000 ms: p50 is the 500th value, p99.9 the 999th.
func TestStatPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := stat(ds, map[string]int{"http 503": 3, "timeout": 2}, 10)
	want := Stat{Count: 1000, PerSec: 100, P50Ms: 500, P90Ms: 900, P99Ms: 990, P999Ms: 999, MaxMs: 1000, ErrCount: 5}
	if s.Count != want.Count || s.PerSec != want.PerSec || s.P50Ms != want.P50Ms || s.P90Ms != want.P90Ms ||
		s.P99Ms != want.P99Ms || s.P999Ms != want.P999Ms || s.MaxMs != want.MaxMs || s.ErrCount != want.ErrCount {
		t.Fatalf("stat = %+v, want %+v", s, want)
	}
	if ds[0] != 1000*time.Millisecond {
		t.Fatal("stat sorted the caller's slice")
	}
}

// The nearest rank is ⌈p·n⌉: of 7 samples the p90 is the 7th (the 6th has only
// 86 % at or below it), of 1600 the p99.9 is the 1599th (rounding p·n gave the
// 1598th, with 0.125 % above it).
func TestStatPercentilesAreNearestRank(t *testing.T) {
	cases := []struct {
		n                   int
		p50, p90, p99, p999 float64
	}{
		{1, 1, 1, 1, 1},
		{7, 4, 7, 7, 7},
		{10, 5, 9, 10, 10},
		{1600, 800, 1440, 1584, 1599},
	}
	for _, c := range cases {
		var ds []time.Duration
		for i := c.n; i >= 1; i-- {
			ds = append(ds, time.Duration(i)*time.Millisecond)
		}
		s := stat(ds, nil, 1)
		if s.P50Ms != c.p50 || s.P90Ms != c.p90 || s.P99Ms != c.p99 || s.P999Ms != c.p999 {
			t.Errorf("n=%d: p50 %v p90 %v p99 %v p99.9 %v, want %v %v %v %v", c.n, s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, c.p50, c.p90, c.p99, c.p999)
		}
	}
}

// Against random latency distributions of every size up to 3000 (uniform,
// exponential, a bimodal stall), each reported percentile v is one of the
// samples to the recorder's precision (1 µs) and meets the definition: at least
// p of the samples are <= v and fewer than p are < v.
func TestStatPercentilesMeetTheDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"uniform":     func() time.Duration { return time.Duration(rng.Int64N(int64(time.Second))) },
		"exponential": func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond)) },
		"stall": func() time.Duration {
			if rng.IntN(100) == 0 {
				return time.Second + time.Duration(rng.Int64N(int64(time.Second)))
			}
			return time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
		},
	}
	for name, draw := range dists {
		for n := 1; n <= 3000; n += 1 + n/20 {
			ds := make([]time.Duration, n)
			for i := range ds {
				ds[i] = draw().Truncate(time.Microsecond)
			}
			s := stat(ds, nil, 1)
			for _, q := range []struct {
				p float64
				v float64
			}{{0.5, s.P50Ms}, {0.9, s.P90Ms}, {0.99, s.P99Ms}, {0.999, s.P999Ms}} {
				v := time.Duration(math.Round(q.v*1000)) * time.Microsecond
				atOrBelow, below := 0, 0
				for _, d := range ds {
					if d <= v {
						atOrBelow++
					}
					if d < v {
						below++
					}
				}
				if atOrBelow == below || float64(atOrBelow) < q.p*float64(n)-1e-9 || float64(below) >= q.p*float64(n)-1e-9 {
					t.Fatalf("%s n=%d: p%v = %v has %d samples <= it and %d < it", name, n, q.p*100, v, atOrBelow, below)
				}
			}
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		status int
		err    error
		want   string
	}{
		{201, nil, ""},
		{429, nil, limitedClass},
		{503, nil, "http 503"},
		{0, fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout"},
		{0, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, "connect"},
		{0, &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, "io: read"},
		{0, fmt.Errorf("get: %w", context.Canceled), "canceled (run interrupted)"},
		{0, errors.New("strange"), "other"},
	}
	for _, c := range cases {
		if got := classify(c.status, c.err); got != c.want {
			t.Errorf("classify(%d, %v) = %q, want %q", c.status, c.err, got, c.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"6", 6 * time.Second},
		{" 42 ", 42 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"", time.Second},     // none: do not hammer
		{"0", time.Second},    // now: still a pause
		{"-3", time.Second},   // nonsense
		{"soon", time.Second}, // unreadable
		{now.Add(-time.Minute).Format(http.TimeFormat), time.Second}, // past
	}
	for _, c := range cases {
		if got := retryAfter(c.header, now); got != c.want {
			t.Errorf("retryAfter(%q) = %v, want %v", c.header, got, c.want)
		}
	}
}

// Ties at the boundary rank: of 1,000 samples, 990 at 1 ms and 10 at 5 s give
// p99 = 1 ms (the 990th) and p99.9 = 5 s (the 999th); one more slow sample
// moves the p99 to 5 s. No samples (every request failed to be sent, say)
// give zeros with the count 0 and the errors kept, not a panic.
func TestStatPercentilesWithTiesAndNoSamples(t *testing.T) {
	for _, c := range []struct {
		slow      int
		p99, p999 float64
	}{{10, 1, 5000}, {11, 5000, 5000}} {
		var ds []time.Duration
		for i := range 1000 {
			d := time.Millisecond
			if i < c.slow {
				d = 5 * time.Second
			}
			ds = append(ds, d)
		}
		s := stat(ds, nil, 1)
		if s.P50Ms != 1 || s.P99Ms != c.p99 || s.P999Ms != c.p999 || s.MaxMs != 5000 {
			t.Errorf("%d of 1000 at 5 s: p50 %v p99 %v p99.9 %v max %v, want 1 %v %v 5000", c.slow, s.P50Ms, s.P99Ms, s.P999Ms, s.MaxMs, c.p99, c.p999)
		}
	}
	s := stat(nil, map[string]int{"timeout": 3}, 10)
	if s.Count != 0 || s.PerSec != 0 || s.P50Ms != 0 || s.P999Ms != 0 || s.MaxMs != 0 || s.ErrCount != 3 {
		t.Errorf("no samples: %+v, want zeros with error count 3", s)
	}
}

// interruptedOnArrival is a server that holds the one request it gets, and
// the context to send it with, which ends as Ctrl-C ends a run's (the cause an
// interrupt.Error, as interrupt.NotifyContext makes it) once the request is
// held.
func interruptedOnArrival(t *testing.T) (*httptest.Server, context.Context) {
	held := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(held)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		<-held
		cancel(interrupt.Error{Signal: os.Interrupt})
	}()
	return srv, ctx
}

// A request Ctrl-C cuts short is "canceled (run interrupted)", not "other". The run's context ends with the signal
// as its cause (pkg/interrupt, for the exit status), and net/http returns that cause, not context.Canceled: every
// interrupted run listed its last requests as unexplained errors "other ... interrupted (signal: interrupt)". The
// request here is a real one, to a server that holds it until the interrupt.
func TestClassifyARequestTheInterruptCut(t *testing.T) {
	srv, ctx := interruptedOnArrival(t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the held request answered %s", resp.Status)
	}
	if got := classify(0, err); got != "canceled (run interrupted)" {
		t.Fatalf("classify(%v) = %q, want %q", err, got, "canceled (run interrupted)")
	}
}

// A request Ctrl-C cut before its answer is unanswered in the summary's last line and not in "done" (the JSON says
// done counts answers), where every cut request used to be counted answered and "unanswered (run interrupted)" was
// always 0. It stays in the op's count and percentiles, timed to the interrupt: the lower bound of a held request.
// It is no answer in req/s either ("answered per second"): the requests a stall held when Ctrl-C came made a server
// that answered none of them look as fast as it was sent to.
func TestARequestTheInterruptCutIsUnanswered(t *testing.T) {
	srv, ctx := interruptedOnArrival(t)
	s := &sender{rec: newRecorder(), maxInflight: 10}
	s.rec.start = time.Now()
	s.launch(ctx, "x", s.rec.start, get(t, srv.URL, "/", 30*time.Second))
	s.wait()
	sum := s.rec.summary("", 1, 1, 0)
	if x := sum.Ops["x"]; sum.Sent != 1 || sum.Done != 0 || x.Count != 1 || x.Errors[classInterrupted] != 1 ||
		x.PerSec != 0 || sum.Total.PerSec != 0 {
		t.Fatalf("sent %d, done %d, op %+v, total %.1f/s; want 1 sent, 0 done, the cut request in count and errors "+
			"as %q, and 0 answered per second", sum.Sent, sum.Done, x, sum.Total.PerSec, classInterrupted)
	}
	var table strings.Builder
	if err := sum.write(&table, false); err != nil {
		t.Fatal(err)
	}
	if want := "answered 0, dropped 0, unanswered (run interrupted) 1"; !strings.Contains(table.String(), want) {
		t.Fatalf("table lacks %q:\n%s", want, table.String())
	}
}
