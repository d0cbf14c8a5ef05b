// Command loadgen drives the platform through its gateway at a constant
// arrival rate and reports latency percentiles, errors by class and the saga
// latency (order created → paid).
//
// It is open loop: every request has a scheduled start time fixed in advance
// (start + i/rate), it is sent at that time whether or not earlier requests
// have answered, and its latency is measured from the scheduled time. A
// closed-loop tool waits for answers before sending more, so when the system
// stalls it quietly sends less and never records the stall ("coordinated
// omission"); here a stall shows up in the percentiles.
//
// The summary (table, or -json with the same figures) per op and in total:
// requests answered and their rate (per second of the sending, or until the
// op's last answer when that came later, so a server falling behind shows in
// the rate too), nearest-rank p50/p90/p99/p99.9 and max
// (exact, to 1 µs: every latency is kept) over the answered requests, failures
// included, and errors by class: "http <code>", "timeout" (-timeout), "connect"
// (refused, unreachable), "connection closed" (no answer), "io: <op>" (a reset
// on a connection that was up), "client: out of file descriptors" (this
// process's limit, not the target), "canceled (run interrupted)" and "other".
// A request the interrupt cut is in the count and percentiles too, timed to
// the interrupt (a lower bound), but unanswered: not in the rate or "done",
// and counted in the summary's last line as "unanswered (run interrupted)".
// A 429 is not an error but "limited", a column of its own: a rate limit
// answered as configured (the platform's limits are per client address, and
// a run comes from one). Like a dropped request it is kept out of the count,
// req/s and the percentiles (refused at once, it would make a limited run look
// fast), and it is not retried, so the schedule stays the one fixed in advance.
// A request due while -max-inflight are in flight is not sent: it is counted
// as dropped (a column of its own, and "dropped" in the JSON) and has no
// latency. An HTTP/1.1 request holds its connection until answered, so the
// same number bounds the connections to the target (the transport's
// MaxConnsPerHost): the default, 1000, is under the gateway's
// GATEWAY_LOOP_MAX_CONNS (1024), past which the gateway answers each new
// connection 503 gateway-busy and closes it; a run that needs more in
// flight is one the gateway would refuse anyway, and raising the bound past
// the cap turns its drops into "http 503" errors. In the JSON "sent" counts requests due, "done" those answered
// (both, and the top-level "dropped", with the drain's polls; "total" without).
// After sending, every request in flight is awaited (at most -timeout), so the
// slowest are not left out; -drain only bounds the wait for sagas. During it
// the orders no poll has yet seen final are polled on at -rate (a row "poll
// (drain)" of its own, not in "all"), so a healthy run's poll row ends with
// every order seen PAID rather than its last seconds' orders "unfinished".
//
// Each saga row (nats: the payment event on -subject; poll: a GET that sees
// the order final) counts every order the run created: PAID ones timed from
// creation to PAID, FAILED ones as the error "failed" timed to FAILED, and
// the ones that source never saw end as the error "unfinished", timed to the
// end of the run (a lower bound). The percentiles include the last two: a
// saga that never ended is exactly the failure the figure must not hide. A
// payment event that comes before the order's creation is answered (a slow
// answer, a fast saga) is kept until it is, and that saga is timed 0.
//
// Bad flags (an unknown one, a rate that is not a positive number, a zero
// duration, a negative log in ratio, a -target that is no http(s) base URL,
// ...) stop it before it sends, with the reason and exit status 2; a run
// that fails exits 1. A run Ctrl-C, SIGTERM or SIGHUP (its terminal closed;
// not under nohup) cut short prints its summary (rates over the time it sent)
// and exits 130, 143 or 129, 128 + the signal's number as a shell reports a
// process that signal ended, so a script does not take its figures for a
// whole -duration's.
//
// With -nats the saga is also split into its five hops (outbox, bridge,
// payment, outbox, bridge) at the timestamps the events carry; see stages.go.
//
// The mix per order (-mix full, the default): one catalogue browse, one
// order, one order poll, and a log in for a share of orders (-login-ratio).
// -mix order sends the orders alone, for what an order and its saga cost
// without the reads beside them (cpuorder.py); its saga is then seen only
// with -nats, as nothing polls. Users are registered and
// logged in before the clock starts; there a 429 is waited out (its
// Retry-After) and the request sent again, so the gateway's login limit
// (5 at once, then 10 a minute per address by default) slows the setup of
// -users 20 to about 90 s instead of ending the run. The mix itself is 3 ×
// -rate + log ins requests/s, which the gateway's default per-address limit
// (100/s) allows up to -rate 33 (the compose load profile runs -rate 30).
//
//	go run ./e2e/cmd/loadgen -target http://127.0.0.1:8080 -rate 100 -duration 30s
//	go run ./e2e/cmd/loadgen -target ... -rate 500 -nats nats://127.0.0.1:14222 -subject 'shanhai.payments.>' -json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
	"github.com/shanhai-dev/shanhai/pkg/interrupt"
	"github.com/shanhai-dev/shanhai/pkg/redact"
)

func main() {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2) // parseFlags has said why
	}
	// Under `loadgen | tee load.txt` a Ctrl-C ends tee too: the summary then fails to write instead of killing
	// the run, which exits with the interrupt's status (130), not as killed by SIGPIPE (141).
	interrupt.OutliveBrokenPipe()
	ctx, stop := interrupt.NotifyContext(context.Background(), interrupt.StopSignals()...)
	defer stop()
	c.out, c.status = os.Stdout, os.Stderr
	err = run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
	}
	// What stopped the run decides its status: a signal, whatever run made of it (a summary, or an error such as
	// a setup it cut off), else run's error.
	if status, ok := interrupt.Status(context.Cause(ctx)); ok {
		os.Exit(status)
	}
	if err != nil {
		os.Exit(1)
	}
}

// parseFlags reads the command line; a flag it does not know or a value that
// would make the run meaningless (or panic mid-run, as a NaN rate did) is
// refused before anything is sent, with the reason written to errOut.
func parseFlags(args []string, errOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var (
		target      = fs.String("target", "http://127.0.0.1:8080", "gateway base URL")
		rate        = fs.Float64("rate", 50, "orders per second; browse and poll run at the same rate, log in at rate × -login-ratio")
		duration    = fs.Duration("duration", 30*time.Second, "how long to send")
		users       = fs.Int("users", 20, "users registered before the run; requests spread over them")
		loginRatio  = fs.Float64("login-ratio", 0.02, "log ins per order (0 for none)")
		timeout     = fs.Duration("timeout", 10*time.Second, "per-request timeout; after sending, requests in flight are always awaited (at most this long)")
		maxInflight = fs.Int64("max-inflight", defaultMaxInflight, "requests in flight, and so connections to -target, at most: a request due at the bound is not sent but counted as dropped (reported per op, not in the percentiles); keep it under the gateway's GATEWAY_LOOP_MAX_CONNS")
		natsURL     = fs.String("nats", "", "NATS URL: measure the saga by subscribing to -subject (payment events)")
		subject     = fs.String("subject", "shanhai.payments.>", "subject carrying payment.succeeded/failed (with any NATS_SUBJECT_PREFIX)")
		ordersSubj  = fs.String("orders-subject", "", "subject carrying order.created, for the per-hop breakdown (default: -subject with payments replaced by orders)")
		drain       = fs.Duration("drain", 15*time.Second, "after sending, how long at most to wait for sagas to finish (payment events with -nats; and, polling on at -rate, orders no poll has seen final)")
		jsonOut     = fs.Bool("json", false, "print the summary as JSON instead of a table")
		mix         = fs.String("mix", mixFull, "what is sent per order: full (browse, order, poll, log ins at -login-ratio) or order (the order alone)")
	)
	if err := fs.Parse(args); err != nil {
		return config{}, err // the flag set has printed it with the usage
	}
	if *ordersSubj == "" {
		*ordersSubj = strings.Replace(*subject, "payments", "orders", 1)
	}
	loginSet := false
	fs.Visit(func(f *flag.Flag) { loginSet = loginSet || f.Name == "login-ratio" })
	if *mix == mixOrder && !loginSet {
		*loginRatio = 0
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	var bad string
	switch {
	case fs.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q (every setting is a -flag)", fs.Arg(0))
	case !finite(*rate) || *rate <= 0 || *rate > maxRate:
		bad = fmt.Sprintf("-rate must be a number of orders per second in (0, %g], got %v", float64(maxRate), *rate)
	case !finite(*loginRatio) || *loginRatio < 0 || *loginRatio > maxLoginRatio:
		bad = fmt.Sprintf("-login-ratio must be a number of log ins per order in [0, %g], got %v", float64(maxLoginRatio), *loginRatio)
	case *duration <= 0:
		bad = fmt.Sprintf("-duration must be positive, got %v", *duration)
	case *users < 1:
		bad = fmt.Sprintf("-users must be at least 1, got %d", *users)
	case *timeout <= 0:
		bad = fmt.Sprintf("-timeout must be positive, got %v", *timeout)
	case *maxInflight < 1:
		bad = fmt.Sprintf("-max-inflight must be at least 1, got %d", *maxInflight)
	case *drain < 0:
		bad = fmt.Sprintf("-drain must not be negative, got %v", *drain)
	case *mix != mixFull && *mix != mixOrder:
		bad = fmt.Sprintf("-mix must be %s or %s, got %q", mixFull, mixOrder, *mix)
	case *mix == mixOrder && *loginRatio != 0:
		bad = fmt.Sprintf("-mix order sends no log ins, got -login-ratio %v", *loginRatio)
	case !baseURL(*target):
		bad = fmt.Sprintf("-target must be the gateway's base URL, http(s)://host:port (a path prefix may follow), got %q", redact.URL(*target))
	}
	if bad != "" {
		fmt.Fprintln(errOut, "loadgen:", bad)
		return config{}, errors.New(bad)
	}
	return config{
		target: strings.TrimRight(*target, "/"), rate: *rate, duration: *duration, users: *users, loginRatio: *loginRatio, timeout: *timeout,
		maxInflight: *maxInflight, natsURL: *natsURL, subject: *subject, ordersSubject: *ordersSubj, drain: *drain, json: *jsonOut,
		mix: *mix,
	}, nil
}

// baseURL reports whether target is a base the request paths can be
// appended to: http or https, a host, no query or fragment. Anything else
// used to pass, and the run spent its setup reaching the first request, which
// then failed with a parser's message (a host:port without a scheme, or with
// a query that the paths landed in) and exit status 1, as if the gateway had
// failed. A trailing slash is dropped by the caller: "//api/v1/..." is no route.
func baseURL(target string) bool {
	u, err := url.Parse(target)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
}

// The mixes -mix names.
const (
	mixFull  = "full"
	mixOrder = "order"
)

// maxRate and maxLoginRatio bound the flags far above what one client host
// can send, so every op's gap between sends stays a positive time.Duration.
const (
	maxRate       = 1e6
	maxLoginRatio = 1e3
)

type config struct {
	target            string
	rate, loginRatio  float64
	duration, timeout time.Duration
	drain             time.Duration
	users             int
	maxInflight       int64
	natsURL, subject  string
	ordersSubject     string
	json              bool
	mix               string    // mixFull or mixOrder
	out, status       io.Writer // the summary; the live line
}

type user struct {
	email, password string
	token           atomic.Value // string; refreshed by log ins
}

// orders tracks created orders until they are final: the poll operation takes
// the oldest unpolled one, and the saga timers start at creation.
type orders struct {
	mu       sync.Mutex
	created  map[string]time.Time
	owner    map[string]*user // not yet seen PAID or FAILED by a poll
	natsSeen map[string]bool  // payment event seen on -subject
	// natsEarly holds the first payment event of each order id not (yet)
	// added. The saga can end before the client has read the 201 that names
	// the order: on a loaded host the answer may take a second while the
	// events take tens of milliseconds. Dropping such an event as another
	// platform's left the order "unfinished", a saga that seemed to stall
	// until the end of the run (eight did in a 20/s run, each counted at
	// 37 s). Events of other platforms' orders stay here unused.
	natsEarly map[string]natsEvent
	queue     []string
}

// natsEvent is a payment event as -subject delivered it.
type natsEvent struct {
	seen  time.Time
	class string // "" for payment.succeeded, sagaFailed for payment.failed
}

func newOrders() *orders {
	return &orders{created: map[string]time.Time{}, owner: map[string]*user{}, natsSeen: map[string]bool{},
		natsEarly: map[string]natsEvent{}}
}

// add records an order the run created, at when its creation was answered.
// If its payment event came first, it returns that saga's ending for the nats
// row: timed from at, that is 0 (it ended before the client knew of it).
func (o *orders) add(id string, u *user, at time.Time) (d time.Duration, class string, ended bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.created[id], o.owner[id] = at, u
	o.queue = append(o.queue, id)
	ev, ok := o.natsEarly[id]
	if !ok {
		return 0, "", false
	}
	delete(o.natsEarly, id)
	o.natsSeen[id] = true
	return max(0, ev.seen.Sub(at)), ev.class, true
}

// next returns an order to poll and requeues it at the back.
func (o *orders) next() (string, *user, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) > 0 {
		id := o.queue[0]
		o.queue = o.queue[1:]
		if u, ok := o.owner[id]; ok {
			o.queue = append(o.queue, id)
			return id, u, true
		}
	}
	return "", nil, false
}

// final forgets the order and returns when it was created. Only the first
// call for an order reports ok: two polls of one order can be in flight at
// once (next requeues it before the answer), and both may see it final, but
// the saga must be counted once.
func (o *orders) final(id string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, pending := o.owner[id]; !pending {
		return time.Time{}, false
	}
	delete(o.owner, id)
	return o.created[id], true
}

// natsFinal marks the order's payment event (of class, seen at seen) seen on
// -subject and returns the saga's duration; it reports ok once per order of
// this run (a redelivered event, or another platform's order, is not a saga
// of its own). An event for an order not yet added is kept for add, which
// ends that saga.
func (o *orders) natsFinal(id string, seen time.Time, class string) (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at, ok := o.created[id]
	if !ok {
		if _, dup := o.natsEarly[id]; !dup {
			o.natsEarly[id] = natsEvent{seen: seen, class: class}
		}
		return 0, false
	}
	if o.natsSeen[id] {
		return 0, false
	}
	o.natsSeen[id] = true
	return seen.Sub(at), true
}

// unfinished returns the creation times of the orders whose saga each source
// has not seen end: no poll saw them PAID or FAILED, no payment event came.
func (o *orders) unfinished() (poll, nats []time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, at := range o.created {
		if _, ok := o.owner[id]; ok {
			poll = append(poll, at)
		}
		if !o.natsSeen[id] {
			nats = append(nats, at)
		}
	}
	return poll, nats
}

func (o *orders) createdAt(id string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at, ok := o.created[id]
	return at, ok
}

func (o *orders) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.owner)
}

// defaultMaxInflight is -max-inflight's default: under the gateway's
// default GATEWAY_LOOP_MAX_CONNS (1024), with room for the probes and other
// clients it holds beside a run.
const defaultMaxInflight = 1000

// transport is the client's connection pool to the target: at most
// maxConns connections, all of which may stay open idle between requests.
// The sender keeps requests in flight to the same bound, so none waits here
// for a connection but for the moment a closing one still counts; one that
// does is timed from when it was due all the same.
func transport(maxConns int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = maxConns
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxConns, maxConns
	return tr
}

func run(ctx context.Context, c config) error {
	cli := &api.Client{Base: c.target, HTTP: &http.Client{Transport: transport(int(c.maxInflight)), Timeout: c.timeout}}

	// NATS first: a -nats nothing answers at is said before the setup spends
	// its minute and a half registering and logging in users for nothing.
	var nc *nats.Conn
	if c.natsURL != "" {
		var err error
		if nc, err = nats.Connect(c.natsURL); err != nil {
			return redact.Error("nats", c.natsURL, err)
		}
		defer nc.Close()
	}

	us, skus, err := setup(ctx, cli, c.users, c.status)
	if err != nil {
		return err
	}
	os_ := newOrders()
	rec := newRecorder()
	hopsSeen := newStages()

	if nc != nil {
		sub, err := nc.Subscribe(c.subject, func(m *nats.Msg) {
			now := time.Now()
			hopsSeen.observe(m.Header, m.Data, now)
			class := ""
			switch m.Header.Get("ce_type") {
			case "payment.succeeded":
			case "payment.failed":
				class = sagaFailed
			default:
				return
			}
			var d struct {
				OrderID string `json:"order_id"`
			}
			if json.Unmarshal(m.Data, &d) != nil {
				return
			}
			if took, ok := os_.natsFinal(d.OrderID, now, class); ok {
				rec.sagaDone("nats", took, class)
			}
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", c.subject, err)
		}
		sub.SetPendingLimits(-1, -1)
		defer func() { _ = sub.Unsubscribe() }()
		osub, err := nc.Subscribe(c.ordersSubject, func(m *nats.Msg) { hopsSeen.observe(m.Header, m.Data, time.Now()) })
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", c.ordersSubject, err)
		}
		osub.SetPendingLimits(-1, -1)
		defer func() { _ = osub.Unsubscribe() }()
	}

	snd := &sender{rec: rec, maxInflight: c.maxInflight}
	pick := func() *user { return us[rand.IntN(len(us))] }
	tok := func(u *user) string { return u.token.Load().(string) }

	// pollOrder reads one order and, the first time a poll sees it PAID or
	// FAILED, ends its poll saga.
	pollOrder := func(ctx context.Context, id string, u *user) (api.Response, error) {
		r, err := cli.GetOrder(ctx, tok(u), id)
		if err == nil && r.Status == http.StatusOK {
			var o api.Order
			if r.JSON(&o) == nil && (o.Status == "PAID" || o.Status == "FAILED") {
				if at, ok := os_.final(id); ok {
					class := ""
					if o.Status == "FAILED" {
						class = sagaFailed
					}
					rec.sagaDone("poll", time.Since(at), class)
				}
			}
		}
		return r, err
	}

	ops := []op{
		{"browse", c.rate, func(ctx context.Context) (api.Response, error) {
			r, err := cli.Products(ctx, tok(pick()))
			return r, err
		}},
		{"order", c.rate, func(ctx context.Context) (api.Response, error) {
			u := pick()
			items := []api.Item{{SKU: skus[rand.IntN(len(skus))], Quantity: 1 + rand.IntN(3)}}
			r, err := cli.CreateOrder(ctx, tok(u), "lg-"+strconv.FormatUint(rand.Uint64(), 36), items, nil)
			if err == nil && r.Status == http.StatusCreated {
				var o api.Order
				if r.JSON(&o) == nil {
					if d, class, ended := os_.add(o.ID, u, time.Now()); ended {
						rec.sagaDone("nats", d, class)
					}
				}
			}
			return r, err
		}},
		{"poll", c.rate, func(ctx context.Context) (api.Response, error) {
			id, u, ok := os_.next()
			if !ok {
				r, err := cli.Do(ctx, http.MethodGet, "/api/v1/orders?limit=5", tok(pick()), nil, nil)
				return r, err
			}
			return pollOrder(ctx, id, u)
		}},
		{"login", c.rate * c.loginRatio, func(ctx context.Context) (api.Response, error) {
			u := pick()
			r, err := cli.Login(ctx, u.email, u.password)
			if err == nil && (r.Status == http.StatusOK || r.Status == http.StatusCreated) {
				var s api.Session
				if r.JSON(&s) == nil && s.AccessToken != "" {
					u.token.Store(s.AccessToken)
				}
			}
			return r, err
		}},
	}

	if c.mix == mixOrder {
		ops = slices.DeleteFunc(ops, func(o op) bool { return o.name != "order" })
	}

	rec.start = time.Now()
	sendDone := make(chan struct{})
	go func() { snd.send(ctx, ops, rec.start.Add(c.duration)); close(sendDone) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev int64
	line := ""
	progress := func() {
		line, prev = rec.progress(prev, snd.inflight.Load())
		fmt.Fprintf(c.status, "\r%s", line)
	}
wait:
	for {
		select {
		case <-tick.C:
			progress()
		case <-sendDone:
			break wait
		}
	}
	secs := c.duration.Seconds()
	if ctx.Err() != nil { // interrupted: rates over the time it actually sent
		secs = min(time.Since(rec.start), c.duration).Seconds()
	}
	// -mix order polls nothing: its orders are no poll's to call unfinished
	// (every one of them would be), nor pending.
	polled := c.mix != mixOrder
	// Drain: every answer still in flight, so the slowest requests are in the
	// percentiles rather than left out (each ends within -timeout, or at once
	// when interrupted); then sagas still running, for at most -drain, by
	// both sources. The polls stopped with the sending, so without drainPolls
	// the orders of a run's last seconds, their sagas not yet over when it
	// ended, were all reported unfinished by poll on a healthy platform.
	drainEnd := time.Now().Add(c.drain)
	drainCtx, stopDrain := context.WithDeadline(ctx, drainEnd)
	defer stopDrain()
	pollsDone := make(chan struct{})
	go func() {
		defer close(pollsDone)
		if polled {
			drainPolls(drainCtx, ctx, snd, os_, c.rate, pollOrder)
		}
	}()
	for snd.inflight.Load() > 0 || (drainCtx.Err() == nil &&
		((c.natsURL != "" && !sagasDone(os_)) || (polled && os_.pending() > 0))) {
		<-tick.C
		progress()
	}
	stopDrain()
	<-pollsDone
	snd.wait() // a drain poll launched after the loop's last look
	fmt.Fprintln(c.status)
	// Orders whose saga a source did not see end are counted with their age
	// now, not left out (see sagaUnfinished).
	end := time.Now()
	poll, natsOpen := os_.unfinished()
	if polled {
		for _, at := range poll {
			rec.sagaDone("poll", end.Sub(at), sagaUnfinished)
		}
	}
	if c.natsURL != "" {
		for _, at := range natsOpen {
			rec.sagaDone("nats", end.Sub(at), sagaUnfinished)
		}
	}

	pending := 0
	if polled {
		pending = os_.pending()
	}
	sum := rec.summary(redact.URL(c.target), c.rate, secs, pending)
	sum.Stages = map[string]Stat{}
	for name, ds := range hopsSeen.durations(func(id string) bool { _, ok := os_.createdAt(id); return ok }) {
		sum.Stages[name] = stat(ds, nil, secs)
	}
	return sum.write(c.out, c.json)
}

// opDrainPoll names the polls the drain sends (drainPolls): a row of their
// own, outside "all", so the mix's rows and total stay the requests the
// schedule sent while the clock ran.
const opDrainPoll = "poll (drain)"

// drainPolls goes on polling, after the sending, the orders no poll has yet
// seen PAID or FAILED, at rate a second (the mix's poll rate) and open loop
// like the mix, until none is left or drain ends (-drain, or an interrupt).
// Each request runs under reqCtx, the run's, so the end of the drain does not
// cancel one already sent: its answer is awaited within -timeout.
func drainPolls(drain, reqCtx context.Context, snd *sender, o *orders, rate float64,
	poll func(context.Context, string, *user) (api.Response, error)) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for drain.Err() == nil && o.pending() > 0 {
		id, u, ok := o.next()
		if !ok {
			return
		}
		snd.launch(reqCtx, opDrainPoll, next, func(ctx context.Context) (api.Response, error) { return poll(ctx, id, u) })
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-drain.Done():
				return
			case <-time.After(d):
			}
		}
	}
}

// sagasDone reports whether every created order's payment event was seen.
func sagasDone(o *orders) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.natsSeen) >= len(o.created)
}

// setup registers and logs in the users and reads the catalogue's SKUs
// (only those that will not be declined, so the saga measures the paid path).
// Its requests wait out 429s (untilAdmitted): nothing is scheduled yet.
func setup(ctx context.Context, cli *api.Client, n int, status io.Writer) ([]*user, []string, error) {
	tag := strconv.FormatUint(rand.Uint64(), 36)
	us := make([]*user, n)
	for i := range us {
		u := &user{email: fmt.Sprintf("load-%s-%d@example.com", tag, i), password: "load password " + tag}
		r, err := untilAdmitted(ctx, status, "register "+u.email, func() (api.Response, error) {
			return cli.Register(ctx, u.email, u.password, "load "+strconv.Itoa(i))
		})
		if err != nil || r.Status != http.StatusCreated {
			return nil, nil, fmt.Errorf("register %s: %v %v", u.email, r, err)
		}
		r, err = untilAdmitted(ctx, status, "log in "+u.email, func() (api.Response, error) {
			return cli.Login(ctx, u.email, u.password)
		})
		var s api.Session
		if err != nil || r.JSON(&s) != nil || s.AccessToken == "" {
			return nil, nil, fmt.Errorf("log in %s: %v %v", u.email, r, err)
		}
		u.token.Store(s.AccessToken)
		us[i] = u
	}
	r, err := untilAdmitted(ctx, status, "products", func() (api.Response, error) {
		return cli.Products(ctx, us[0].token.Load().(string))
	})
	var body struct{ Products []api.Product }
	if err != nil || r.JSON(&body) != nil {
		return nil, nil, fmt.Errorf("products: %v %v", r, err)
	}
	var skus []string
	for _, p := range body.Products {
		if p.PriceCents*3 < 100000 {
			skus = append(skus, p.SKU)
		}
	}
	if len(skus) == 0 {
		return nil, nil, fmt.Errorf("no product cheap enough to be paid: %v", r)
	}
	return us, skus, nil
}

// maxLimitWait bounds one wait for a limit during setup: a Retry-After longer
// than this (the user service's login guard can name its whole 5 min window)
// is checked again after it rather than trusted blindly.
const maxLimitWait = time.Minute

// untilAdmitted sends a setup request again while a rate limit answers 429,
// each time after the answer's Retry-After (1 s when it has none), saying so
// on status, until it is admitted or the run is interrupted. Only setup does this: it runs before the clock starts, so the
// waits delay no scheduled request.
func untilAdmitted(ctx context.Context, status io.Writer, what string, send func() (api.Response, error)) (api.Response, error) {
	for {
		r, err := send()
		if err != nil || r.Status != http.StatusTooManyRequests {
			return r, err
		}
		wait := min(retryAfter(r.Header.Get("Retry-After"), time.Now()), maxLimitWait)
		fmt.Fprintf(status, "loadgen: %s: limited (429), sending again in %v\n", what, wait)
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("waiting out a 429: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date (RFC 9110
// 10.2.3). Absent, unreadable or past, it is 1 s, so a limit that does not say
// is not hammered.
func retryAfter(v string, now time.Time) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return time.Second
}
