package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGateway answers the routes the mix uses, the catalogue after browseTook.
func fakeGateway(browseTook time.Duration) *httptest.Server {
	return httptest.NewServer(fakeRoutes(browseTook))
}

func fakeRoutes(browseTook time.Duration) *http.ServeMux {
	var orders atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("POST /api/v1/sessions", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"user_id":"u","access_token":"token"}`)
	})
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(browseTook)
		fmt.Fprint(w, `{"products":[{"sku":"TEA-1","price_cents":450,"currency":"EUR"}]}`)
	})
	mux.HandleFunc("POST /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"o%d","status":"PENDING"}`, orders.Add(1))
	})
	mux.HandleFunc("GET /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"orders":[]}`) })
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":%q,"status":"PAID"}`, r.PathValue("id"))
	})
	return mux
}

// runMix runs the mix of 2 users for 1 s at 20 orders/s with 0.5 log ins per
// order and -drain 0 (unless extra flags say otherwise) against target, and
// returns the -json summary and what the run said on its status output.
func runMix(t *testing.T, target string, extra ...string) (Summary, string) {
	t.Helper()
	var out, status bytes.Buffer
	args := []string{"-target", target, "-rate", "20", "-duration", "1s", "-drain", "0s", "-login-ratio", "0.5", "-users", "2", "-json"}
	c, err := parseFlags(append(args, extra...), &status)
	if err != nil {
		t.Fatal(err)
	}
	c.out, c.status = &out, &status
	if err := run(context.Background(), c); err != nil {
		t.Fatalf("run: %v (status %q)", err, status.String())
	}
	var sum Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", out.String(), err)
	}
	return sum, status.String()
}

// A whole run with -drain 0 against a catalogue that takes 600 ms: the
// browses still in flight when sending ends (the last 600 ms of them) are
// awaited and in the summary; they used to be left out, the slowest first.
// The mix is sent at its rates: per second 20 of browse, order and poll, and
// 20 × 0.5 log ins.
func TestRunAwaitsRequestsInFlightAndSendsTheMix(t *testing.T) {
	gw := fakeGateway(600 * time.Millisecond)
	defer gw.Close()
	sum, status := runMix(t, gw.URL)
	if sum.Sent == 0 || sum.Done != sum.Sent || sum.Dropped != 0 || sum.Total.ErrCount != 0 {
		t.Errorf("sent %d, done %d, dropped %d, errors %v: want every request answered and in the summary", sum.Sent, sum.Done, sum.Dropped, sum.Total.Errors)
	}
	for op, want := range map[string]int{"browse": 20, "order": 20, "poll": 20, "login": 10} {
		if n := sum.Ops[op].Count; n < want-1 || n > want+1 {
			t.Errorf("%s: %d answered, want %d±1", op, n, want)
		}
	}
	if p := sum.Ops["browse"].P50Ms; p < 600 {
		t.Errorf("browse p50 %.1f ms, below the catalogue's 600 ms", p)
	}
	if !strings.Contains(status, "in flight") {
		t.Errorf("no live line on the status output: %q", status)
	}
}

// -mix order sends orders alone, at -rate: no catalogue browse, order poll
// or log in beside them (setup still reads the catalogue once for its SKUs),
// so a run measures what an order and its saga cost without the reads. There
// was no such mix: every run paid for three requests per order.
func TestOrderMixSendsOnlyOrders(t *testing.T) {
	var products atomic.Int64
	mux := fakeRoutes(0)
	routes := http.NewServeMux()
	routes.Handle("/", mux)
	routes.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		products.Add(1)
		mux.ServeHTTP(w, r)
	})
	gw := httptest.NewServer(routes)
	defer gw.Close()
	sum, _ := runMix(t, gw.URL, "-mix", "order", "-login-ratio", "0")
	if n := sum.Ops["order"].Count; n < 19 || n > 21 {
		t.Errorf("order: %d answered, want 20±1", n)
	}
	for _, op := range []string{"browse", "poll", "login"} {
		if n := sum.Ops[op].Count; n != 0 {
			t.Errorf("%s: %d answered, want none in the order mix", op, n)
		}
	}
	if n := products.Load(); n != 1 {
		t.Errorf("catalogue read %d times, want once (setup)", n)
	}
}

// A gateway whose log in limit refuses the second log in of setup with
// Retry-After: 1, and then refuses every other log in and catalogue browse
// of the run (the first products call is setup's): setup waits the second
// out and sends again, and the run completes with each 429 of the mix counted
// once as limited, not as an error and not retried (the server saw exactly
// the requests the schedule sent).
func TestRunWaitsOutSetupLimitsAndCountsLimitedAnswers(t *testing.T) {
	var (
		mu                   sync.Mutex
		sessions, products   int
		refusedAt, retriedAt time.Time
		limitedLogins        int
		limitedBrowses       int
	)
	refuse := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"title":"too many requests from this address"}`)
	}
	routes := fakeRoutes(0)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		limit := false
		switch r.Method + " " + r.URL.Path {
		case "POST /api/v1/sessions":
			sessions++
			switch {
			case sessions == 2:
				refusedAt, limit = time.Now(), true
			case sessions == 3:
				retriedAt = time.Now()
			case sessions%2 == 0:
				limitedLogins++
				limit = true
			}
		case "GET /api/v1/products":
			if products++; products%2 == 0 {
				limitedBrowses++
				limit = true
			}
		}
		mu.Unlock()
		if limit {
			refuse(w)
			return
		}
		routes.ServeHTTP(w, r)
	}))
	defer gw.Close()

	sum, status := runMix(t, gw.URL)
	mu.Lock()
	defer mu.Unlock()
	if waited := retriedAt.Sub(refusedAt); waited < time.Second {
		t.Errorf("setup sent the refused log in again after %v, before its Retry-After of 1 s", waited)
	}
	if !strings.Contains(status, "limited (429), sending again in 1s") {
		t.Errorf("setup did not say it waited out a limit: %q", status)
	}
	const setupSessions, setupProducts = 3, 1 // two log ins, one sent twice; one catalogue read
	login, browse := sum.Ops["login"], sum.Ops["browse"]
	// Limited answers are counted apart from the answered ones (out of the percentiles).
	if login.Count+login.Limited != sessions-setupSessions || browse.Count+browse.Limited != products-setupProducts {
		t.Errorf("answered and limited: login %d+%d, browse %d+%d; the server saw %d and %d in the run: a limited request was sent again or lost",
			login.Count, login.Limited, browse.Count, browse.Limited, sessions-setupSessions, products-setupProducts)
	}
	if login.Limited != limitedLogins || browse.Limited != limitedBrowses || sum.Total.Limited != limitedLogins+limitedBrowses {
		t.Errorf("limited: login %d, browse %d, total %d; the server refused %d and %d",
			login.Limited, browse.Limited, sum.Total.Limited, limitedLogins, limitedBrowses)
	}
	if limitedBrowses == 0 || limitedLogins == 0 {
		t.Errorf("the server refused %d browses and %d log ins: the test did not exercise the mix's 429s", limitedBrowses, limitedLogins)
	}
	if sum.Total.ErrCount != 0 || sum.Done != sum.Sent {
		t.Errorf("errors %v, done %d of %d: a 429 is an answer, not an error", sum.Total.Errors, sum.Done, sum.Sent)
	}
	var table bytes.Buffer
	if err := sum.write(&table, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"limited\t", "too many requests from this address", "lift the limits"} {
		if !strings.Contains(strings.ReplaceAll(table.String(), "  ", "\t"), want) {
			t.Errorf("table does not say %q:\n%s", want, table.String())
		}
	}
}

// A catalogue that serves one browse at a time in 100 ms can answer 10/s; the
// run offers 20/s for 1 s, so the last browses are answered about 2 s after
// the start. Their req/s must be what was answered per second, about 10, not
// the 20 sent per second of -duration: a server falling behind shows in the
// rate as well as in the latency.
func TestRateIsWhatWasAnsweredPerSecond(t *testing.T) {
	var mu sync.Mutex
	routes := fakeRoutes(0)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/products" {
			mu.Lock()
			defer mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		routes.ServeHTTP(w, r)
	}))
	defer gw.Close()
	sum, _ := runMix(t, gw.URL)
	browse := sum.Ops["browse"]
	if browse.Count < 19 || browse.ErrCount != 0 {
		t.Fatalf("browse %+v, want about 20 answered without errors", browse)
	}
	// 20 answers took at least 2 s (one at a time, 100 ms each): at most 10/s.
	if browse.PerSec > 10.5 {
		t.Errorf("browse: %d answered at %.1f/s; the catalogue answered at most 10/s", browse.Count, browse.PerSec)
	}
	// The other ops were answered within the run's second: their rate is theirs.
	if order := sum.Ops["order"]; order.PerSec < float64(order.Count)*0.7 {
		t.Errorf("order: %d answered at %.1f/s, want about %d/s (all answered within the 1 s run)", order.Count, order.PerSec, order.Count)
	}
}

// -mix order polls nothing, so there is no poll source to report: no
// "saga (poll)" row and no order counted as not yet seen final by a poll.
// Every order of the run was reported an unfinished saga by poll (and the
// table's "sagas that did not end PAID" listed them all), as if the saga had
// stalled, because the orders kept for polling were never polled.
func TestOrderMixReportsNoPollSaga(t *testing.T) {
	gw := fakeGateway(0)
	defer gw.Close()
	sum, _ := runMix(t, gw.URL, "-mix", "order", "-login-ratio", "0")
	if n := sum.Ops["order"].Count; n == 0 {
		t.Fatal("no order answered")
	}
	if st, ok := sum.Saga["poll"]; ok {
		t.Errorf("saga (poll) reported with nothing polling: %d orders, errors %v", st.Count, st.Errors)
	}
	if sum.OrdersPending != 0 {
		t.Errorf("%d orders not seen final by a poll, with nothing polling: want 0", sum.OrdersPending)
	}
}

// A healthy platform whose orders become PAID 400 ms after they are created:
// the orders of the run's last 400 ms cannot be seen PAID before sending
// ends, so only polls after it can see them. The drain (here 10 s, far more
// than needed) must keep polling them until every one is seen final, and the
// poll row must then report no unfinished saga. The drain used to wait for
// the NATS sagas only and sent no poll, so every run counted the orders of
// its last moments "unfinished" by poll (13 of 20 here) although nothing
// was wrong. The mix's own poll row stays the scheduled polls.
func TestDrainPollsUntilEveryOrderIsSeenFinal(t *testing.T) {
	const paidAfter = 400 * time.Millisecond
	var (
		mu      sync.Mutex
		created = map[string]time.Time{}
		seq     int
	)
	mux := http.NewServeMux()
	mux.Handle("/", fakeRoutes(0))
	mux.HandleFunc("POST /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		seq++
		id := fmt.Sprintf("o%d", seq)
		created[id] = time.Now()
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"status":"PENDING"}`, id)
	})
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		mu.Lock()
		at, ok := created[id]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		st := "PENDING"
		if time.Since(at) >= paidAfter {
			st = "PAID"
		}
		fmt.Fprintf(w, `{"id":%q,"status":%q}`, id, st)
	})
	gw := httptest.NewServer(mux)
	defer gw.Close()

	sum, _ := runMix(t, gw.URL, "-drain", "10s")
	n := sum.Ops["order"].Count
	poll := sum.Saga["poll"]
	if n < 15 || poll.Count != n || poll.ErrCount != 0 || sum.OrdersPending != 0 {
		t.Errorf("%d orders created; saga (poll): %d counted, errors %v; not seen final by poll %d: want every order seen PAID, none unfinished",
			n, poll.Count, poll.Errors, sum.OrdersPending)
	}
	if poll.P50Ms < float64(paidAfter.Milliseconds()) {
		t.Errorf("saga (poll) p50 %.1f ms, below the %v the orders took to be paid", poll.P50Ms, paidAfter)
	}
	if n := sum.Ops["poll"].Count; n < 19 || n > 21 {
		t.Errorf("poll: %d answered, want the mix's 20±1 (the drain's polls in a row of their own)", n)
	}
	drained := sum.Ops[opDrainPoll]
	mix := 0
	for op, st := range sum.Ops {
		if op != opDrainPoll {
			mix += st.Count
		}
	}
	if drained.Count == 0 || sum.Total.Count != mix {
		t.Errorf("%q: %d answered; all: %d, the mix's rows %d: want the drain's polls counted in their own row only", opDrainPoll, drained.Count, sum.Total.Count, mix)
	}
}

// A -nats nothing answers at is said at once, before the setup: the run
// connected only after registering and logging in every user (about a
// minute and a half against the gateway's default login limit), which it
// then spent for nothing, leaving the users behind on the platform.
func TestUnreachableNATSFailsBeforeTheSetup(t *testing.T) {
	var requests atomic.Int64
	mux := fakeRoutes(0)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	defer gw.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "nats://" + ln.Addr().String()
	_ = ln.Close()

	var out, status bytes.Buffer
	c, err := parseFlags([]string{"-target", gw.URL, "-users", "2", "-duration", "1s", "-nats", refused}, &status)
	if err != nil {
		t.Fatal(err)
	}
	c.out, c.status = &out, &status
	err = run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "nats") {
		t.Fatalf("run with -nats %s: %v, want a NATS error", refused, err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the run sent %d requests to the gateway before finding NATS unreachable, want none", n)
	}
}

// The error names the NATS server a user gave, but never its password: the
// message ends up in terminals, CI logs and issue reports.
func TestUnreachableNATSErrorShowsNoPassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	for _, urls := range []string{
		"nats://bob:s3cret@" + addr,
		"nats://127.0.0.1:1,nats://bob:s3cret@" + addr,
		// A user without a password is nats.go's token: the secret itself.
		"nats://s3cret@" + addr,
		// A password with a bad escape: nats.go's url.Parse error quotes
		// the URL whole.
		"nats://bob:s3cret%zz@" + addr,
		// No scheme (nats.go adds nats://), and a base64 token's '=' padding.
		"s3cretdG9r=@" + addr,
	} {
		var out, status bytes.Buffer
		c, err := parseFlags([]string{"-target", "http://127.0.0.1:1", "-users", "1", "-duration", "1s", "-nats", urls}, &status)
		if err != nil {
			t.Fatal(err)
		}
		c.out, c.status = &out, &status
		err = run(context.Background(), c)
		if err == nil {
			t.Fatalf("run with -nats %s: no error", urls)
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), addr) {
			t.Errorf("run with -nats %s: %q, want the server named without its password", urls, err)
		}
	}
}

// A -target with credentials (a gateway behind basic auth) is named in the
// summary without its password: the JSON summary printed -target as given,
// and with it the password, into terminals and CI logs.
func TestSummaryShowsNoTargetPassword(t *testing.T) {
	gw := fakeGateway(0)
	defer gw.Close()
	host := strings.TrimPrefix(gw.URL, "http://")
	sum, status := runMix(t, "http://bob:s3cret@"+host, "-duration", "200ms")
	if strings.Contains(sum.Target, "s3cret") || !strings.Contains(sum.Target, host) {
		t.Errorf("summary target %q, want %s named without its password", sum.Target, host)
	}
	if strings.Contains(status, "s3cret") {
		t.Errorf("status output shows the password: %q", status)
	}
}

// A -target refused as no base URL is quoted in the refusal, without its
// password: the refusal is printed as the summary would be.
func TestRefusedTargetShowsNoPassword(t *testing.T) {
	for _, target := range []string{
		"http://bob:s3cret@gw:8080?x=1",
		"bob:s3cret@gw:8080",
		"ftp://bob:pw@x#s3cret@gw:8080",
	} {
		var errOut bytes.Buffer
		_, err := parseFlags([]string{"-target", target}, &errOut)
		if err == nil {
			t.Fatalf("-target %s: accepted, want it refused", target)
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(errOut.String(), "s3cret") || !strings.Contains(err.Error(), "gw:8080") {
			t.Errorf("-target %s: refused with %q (printed %q), want gw:8080 named without the password", target, err, errOut.String())
		}
	}
}
