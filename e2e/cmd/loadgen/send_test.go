package main

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
)

// get returns an op's request: GET path on the test server.
func get(t *testing.T, base, path string, timeout time.Duration) func(context.Context) (api.Response, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cli := &api.Client{Base: base, HTTP: &http.Client{Transport: tr, Timeout: timeout}}
	return func(ctx context.Context) (api.Response, error) {
		return cli.Do(ctx, http.MethodGet, path, "", nil, nil)
	}
}

// sendFor runs ops for d from now and returns when the last one is launched;
// the caller waits for the answers (s.wait) when its server lets them end.
func sendFor(ops []op, d time.Duration, maxInflight int64) *sender {
	s := &sender{rec: newRecorder(), maxInflight: maxInflight}
	s.rec.start = time.Now()
	s.send(context.Background(), ops, s.rec.start.Add(d))
	return s
}

// concurrency counts the requests a test server is handling, and the most at once.
type concurrency struct{ now, peak atomic.Int64 }

func (c *concurrency) enter() {
	n := c.now.Add(1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
}

func (c *concurrency) leave() { c.now.Add(-1) }

// A server that stalls for 2 s once, as behind a stopped process: every
// request due during the stall must be recorded with the wait from when it
// was due. A closed-loop client would have sent nothing during the stall and
// recorded one slow request out of hundreds, leaving the p99 untouched.
//
// The stall holds every request of op x that comes while it lasts and lets
// them all go together when it ends, as a stopped process resumed does. It
// used to be a mutex every request passed, a 1 s stall at 200 requests/s and
// a 500 ms line: after the stall the held requests went one lock hand-off at
// a time, and on a busy host (-race beside another suite, or two CPU hogs)
// that queue drained for seconds, so requests due after the stall crossed
// the line too and the count below failed in most runs. Now x runs at half
// the rate with a stall twice as long (as many requests in its first half, a
// host's delays a second away from the line, not half a second), and op y,
// beside it at the same rate on a path that never stalls, shows in the same
// run how many requests the host alone delayed past the line. y's delays are
// timed here, not by the sender under test, so that a sender that inflated
// every latency would not excuse itself.
func TestStallShowsInThePercentiles(t *testing.T) {
	const (
		rate, secs = 100, 4
		stallAt    = rate // the stall starts about 1 s in
		stall      = 2 * time.Second
		line       = stall / 2
	)
	var (
		n       atomic.Int64
		resumed = make(chan struct{}) // closed when the stall ends
		stalled time.Duration         // how long it lasted (a busy host oversleeps); read after resumed
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/x" {
			return
		}
		switch k := n.Add(1); {
		case k == stallAt:
			began := time.Now()
			time.Sleep(stall)
			stalled = time.Since(began)
			close(resumed)
		case k > stallAt:
			<-resumed
		}
	}))
	defer srv.Close()
	// Each y request's call and return, as the test sees them.
	type span struct{ called, returned time.Time }
	var (
		mu    sync.Mutex
		spans []span
	)
	getY := get(t, srv.URL, "/y", 10*time.Second)
	y := func(ctx context.Context) (api.Response, error) {
		called := time.Now()
		r, err := getY(ctx)
		mu.Lock()
		spans = append(spans, span{called, time.Now()})
		mu.Unlock()
		return r, err
	}
	ops := []op{{"x", rate, get(t, srv.URL, "/x", 10*time.Second)}, {"y", rate, y}}
	s := sendFor(ops, secs*time.Second, 10000)
	s.wait()
	// Every request was answered, so the stall ended if it began at all.
	select {
	case <-resumed:
	default:
		t.Fatalf("the server saw %d requests of x, fewer than the %d the stall starts at", n.Load(), stallAt)
	}
	// y's k-th request (by call) was due no earlier than start + k/rate, and
	// never later than it was called; an answer at least line after that
	// first time is one the host delayed (counted a request or two generously).
	slices.SortFunc(spans, func(a, b span) int { return a.called.Compare(b.called) })
	hostDelayed := 0
	for k, sp := range spans {
		if sp.returned.Sub(s.rec.start.Add(time.Duration(k)*time.Second/rate)) >= line {
			hostDelayed++
		}
	}

	sum := s.rec.summary("", rate, secs, 0)
	for _, o := range ops {
		if st := sum.Ops[o.name]; st.Count < secs*rate-1 || st.ErrCount != 0 || st.Dropped != 0 {
			t.Fatalf("%s: stat = %+v, want %d answered, no errors, none dropped", o.name, st, secs*rate)
		}
	}
	if st := sum.Ops["x"]; st.P99Ms < 0.9*float64(stall.Milliseconds()) {
		t.Errorf("p99 = %.1f ms, want the %v stall to show (>= 90%% of it); stat %+v", st.P99Ms, stall, st)
	}
	// The requests due in the stall's first half waited at least half of it:
	// about rate × (stall - line) of them, a few more while the host answers
	// the held ones at once when it ends, and as many more as the host itself
	// delayed past the line (y's count; none on an idle host).
	waited := 0
	for _, d := range s.rec.lat["x"] {
		if d >= line {
			waited++
		}
	}
	want := int(rate * (stalled - line).Seconds())
	if waited < want*7/10 || waited > want*3/2+hostDelayed {
		t.Errorf("%d requests waited >= %v, want about %d (every request due in the stall's first half; "+
			"stalled %v) and at most %d more (as many of y's as the host delayed); stats %+v",
			waited, line, want, stalled, hostDelayed, sum.Ops)
	}
}

// A request launched after its due time (a late scheduler on a busy host) is
// timed from when it was due, not from when it went.
func TestLateLaunchIsTimedFromItsDueTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	s := &sender{rec: newRecorder(), maxInflight: 1}
	s.launch(context.Background(), "x", time.Now().Add(-time.Second), get(t, srv.URL, "/", time.Second))
	s.wait()
	if got := s.rec.lat["x"]; len(got) != 1 || got[0] < time.Second {
		t.Fatalf("latencies = %v, want one of at least 1 s", got)
	}
}

// Over 2 s each op starts rate × 2 s requests (±1 for the random offset of its
// first), spread over the run, also when every answer takes 300 ms: more are in
// flight, none fewer are sent.
func TestRateIsHeldWhenTheServerIsSlow(t *testing.T) {
	var (
		inflight concurrency
		mu       sync.Mutex
		arrivals []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		inflight.enter()
		defer inflight.leave()
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		time.Sleep(300 * time.Millisecond)
	}))
	defer srv.Close()
	const secs = 2
	ops := []op{{"a", 100, get(t, srv.URL, "/", 10*time.Second)}, {"b", 40, get(t, srv.URL, "/", 10*time.Second)}}
	s := sendFor(ops, secs*time.Second, 10000)
	s.wait()

	sum := s.rec.summary("", 100, secs, 0)
	for _, o := range ops {
		want := o.rate * secs
		st := sum.Ops[o.name]
		if float64(st.Count) < want-1 || float64(st.Count) > want+1 || st.ErrCount != 0 || st.Dropped != 0 {
			t.Errorf("%s: %+v, want %.0f±1 answered, no errors, none dropped", o.name, st, want)
		}
		if st.P50Ms < 300 {
			t.Errorf("%s: p50 %.1f ms, below the server's 300 ms", o.name, st.P50Ms)
		}
	}
	if sum.Sent != int64(len(arrivals)) || sum.Done != sum.Sent {
		t.Errorf("sent %d, done %d, server saw %d", sum.Sent, sum.Done, len(arrivals))
	}
	// 140/s × 0.3 s is about 42 in flight; a generator waiting for answers would hold far fewer.
	if p := inflight.peak.Load(); p < 30 {
		t.Errorf("at most %d requests in flight at the server, want about 42", p)
	}
	firstHalf := 0
	for _, at := range arrivals {
		if at.Sub(s.rec.start) < secs*time.Second/2 {
			firstHalf++
		}
	}
	if len(arrivals) == 0 || firstHalf*100/len(arrivals) < 35 || firstHalf*100/len(arrivals) > 65 {
		t.Errorf("%d of %d requests arrived in the first half of the run, want about half", firstHalf, len(arrivals))
	}
}

// At -max-inflight the requests due are counted as dropped, per op, and are
// kept out of the latencies; the bound holds across ops launching together.
func TestInflightBoundDropsAreCountedNotTimed(t *testing.T) {
	var inflight concurrency
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		inflight.enter()
		defer inflight.leave()
		<-release
	}))
	defer srv.Close()
	const bound = 3
	var ops []op
	for _, name := range []string{"a", "b", "c", "d"} {
		ops = append(ops, op{name, 100, get(t, srv.URL, "/", 10*time.Second)})
	}
	s := sendFor(ops, time.Second, bound)
	close(release)
	s.wait()

	sum := s.rec.summary("", 100, 1, 0)
	if p := inflight.peak.Load(); p != bound {
		t.Errorf("at most %d requests in flight at the server, want the bound %d", p, bound)
	}
	if sum.Done != bound || sum.Total.Count != bound || sum.Dropped != sum.Sent-bound || sum.Total.Dropped != int(sum.Dropped) {
		t.Errorf("sent %d, done %d, dropped %d, total %+v; want %d answered and the rest dropped", sum.Sent, sum.Done, sum.Dropped, sum.Total, bound)
	}
	perOp := 0
	for _, o := range ops {
		perOp += sum.Ops[o.name].Dropped
	}
	if perOp != int(sum.Dropped) || sum.Sent < 4*100-4 {
		t.Errorf("dropped per op add up to %d of %d; sent %d, want about 400", perOp, sum.Dropped, sum.Sent)
	}
	// The answered ones waited for the release at the end of the run; a
	// dropped one timed at ~0 s would pull the p50 down to nothing.
	if sum.Total.P50Ms < 500 {
		t.Errorf("p50 = %.1f ms, want the answered requests' wait (about 1 s)", sum.Total.P50Ms)
	}
}

// Every outcome lands in exactly one class: statuses by code, a client timeout,
// a refused connection and a connection closed without an answer.
func TestErrorsAreClassedAndCountedExactly(t *testing.T) {
	var (
		mu     sync.Mutex
		served = map[int]int{} // status → how many the server answered on /mixed
		n      int
	)
	codes := []int{200, 404, 429, 500, 503}
	mux := http.NewServeMux()
	mux.HandleFunc("/mixed", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		code := codes[n%len(codes)]
		n++
		served[code]++
		mu.Unlock()
		w.WriteHeader(code)
	})
	mux.HandleFunc("/slow", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/hangup", func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	_ = ln.Close()

	s := sendFor([]op{
		{"mixed", 100, get(t, srv.URL, "/mixed", 10*time.Second)},
		{"slow", 20, get(t, srv.URL, "/slow", 100*time.Millisecond)},
		{"hangup", 20, get(t, srv.URL, "/hangup", 10*time.Second)},
		{"refused", 20, get(t, refused, "/", 10*time.Second)},
	}, time.Second, 10000)
	s.wait()
	sum := s.rec.summary("", 100, 1, 0)

	mu.Lock()
	defer mu.Unlock()
	mixed := sum.Ops["mixed"]
	want := map[string]int{}
	for code, k := range served {
		if code != 200 && code != 429 {
			want["http "+strconv.Itoa(code)] = k
		}
	}
	if mixed.Count != n-served[429] || mixed.ErrCount != n-served[200]-served[429] || !maps.Equal(mixed.Errors, want) || mixed.Limited != served[429] {
		t.Errorf("mixed: %+v, want %d answered with errors %v and %d limited apart", mixed, n-served[429], want, served[429])
	}
	for op, class := range map[string]string{"slow": "timeout", "hangup": "connection closed", "refused": "connect"} {
		st := sum.Ops[op]
		if st.Count < 19 || st.ErrCount != st.Count || st.Errors[class] != st.Count {
			t.Errorf("%s: %+v, want every one of about 20 classed %q (samples %v)", op, st, class, sum.ErrorSamples)
		}
	}
	if sum.Done != sum.Sent || sum.Total.ErrCount != mixed.ErrCount+sum.Ops["slow"].Count+sum.Ops["hangup"].Count+sum.Ops["refused"].Count {
		t.Errorf("sent %d, done %d, total %+v", sum.Sent, sum.Done, sum.Total)
	}
}
