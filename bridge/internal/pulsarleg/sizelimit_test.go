package pulsarleg_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

func TestAdminMaxMessageSize(t *testing.T) {
	var paths []string
	// Namespace "l<local>g<global>": each policy a number, or "-" for unset.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		ns := strings.Split(r.URL.Path, "/")[5]
		if ns == "gone" {
			http.Error(w, `{"reason":"Topic not found"}`, http.StatusNotFound)
			return
		}
		local, global, _ := strings.Cut(strings.TrimPrefix(ns, "l"), "g")
		v := local
		if r.URL.Query().Get("isGlobal") == "true" {
			v = global
		}
		if v == "-" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprint(w, v)
	}))
	defer srv.Close()
	get := pulsarleg.AdminMaxMessageSize(srv.URL+"/", srv.Client())
	ctx := context.Background()
	for ns, want := range map[string]int{"l-g-": 0, "l1500g-": 1500, "l-g2500": 2500, "l5000g1500": 5000, "l0g1500": 0} {
		if n, err := get(ctx, "persistent://shanhai/"+ns+"/shanhai.orders"); n != want || err != nil {
			t.Errorf("policies %s: %d, %v; want %d", ns, n, err, want)
		}
	}
	if _, err := get(ctx, "persistent://shanhai/gone/shanhai.orders"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing topic: %v, want the 404", err)
	}
	if _, err := get(ctx, "shanhai.orders"); err == nil {
		t.Fatal("a short topic name must be an error, not a request")
	}
	if want := "/admin/v2/persistent/shanhai/gone/shanhai.orders/maxMessageSize"; paths[len(paths)-1] != want {
		t.Fatalf("path %q, want %q", paths[len(paths)-1], want)
	}
}

// setMaxMessageSize sets the topic-level max message size policy of e's archive topic (creating the topic); query
// "?isGlobal=true" sets the global one.
func (e *env) setMaxMessageSize(t *testing.T, n int, query string) {
	t.Helper()
	p, err := e.pulsar.CreateProducer(pulsar.ProducerOptions{Topic: e.route.PulsarTopic})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	u := e.admin + "/admin/v2/" + strings.Replace(e.route.PulsarTopic, "://", "/", 1) + "/maxMessageSize" + query
	resp, err := http.Post(u, "application/json", strings.NewReader(fmt.Sprint(n)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s", u, resp.Status)
	}
	get := pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	deadline := time.Now().Add(30 * time.Second)
	for got, err := get(context.Background(), e.route.PulsarTopic); got != n; got, err = get(context.Background(), e.route.PulsarTopic) {
		if time.Now().After(deadline) {
			t.Fatalf("max message size policy %d (%v), want %d", got, err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accounted checks that every one of n messages of partition 0 was archived once in offset order or dead-lettered
// as too large, and that JetStream was acked to the end: nothing acked is lost. before is what the test read from the
// archive already. It returns the dead-lettered seqs.
func (e *env) accounted(t *testing.T, n int, before []harness.Record) []int {
	t.Helper()
	recs := append(before, e.read(t, n-len(before), 10*time.Second)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	letters, err := harness.ReadDeadLetters(ctx, e.brokers, e.dlqTopic, n-len(recs))
	if err != nil {
		t.Fatalf("%d of %d archived, and the rest not dead-lettered: %v", len(recs), n, err)
	}
	seen := map[int]int{}
	last := int64(-1)
	for _, r := range recs {
		seen[r.Seq]++
		if r.Offset <= last {
			t.Fatalf("offset %d archived after %d", r.Offset, last)
		}
		last = r.Offset
	}
	var dead []int
	for _, m := range letters {
		h := harness.Headers(m)
		seq, _ := harness.Seq(m.Value)
		if h[dlq.HeaderReason] != "too_large" || h[dlq.HeaderLeg] != metrics.LegB {
			t.Fatalf("dead letter of seq %d: headers %v", seq, h)
		}
		seen[seq]++
		dead = append(dead, seq)
	}
	for s := 0; s < n; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d archived or dead-lettered %d times (archived %d, dead letters %v)", s, seen[s], len(recs), dead)
		}
	}
	waitAcked(t, e, 1)
	return dead
}

// TestLegBDeadLettersWhatExceedsTheTopicsMaxMessageSize: under a topic-level max message size the broker refuses a
// larger message and stores the later ones, and the client reports nothing; leg B then skipped the refused offset
// after a restart. Sizes from well under to well over the limit: each is archived or dead-lettered, never lost.
func TestLegBDeadLettersWhatExceedsTheTopicsMaxMessageSize(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const limit = 1500
	e.setMaxMessageSize(t, limit, "")
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	e.leg = pulsarleg.New(e.opts)
	e.sizes = map[int]int{}
	n := 0
	for size := 500; size <= 1500; size += 25 { // the payload; the limit counts headers too
		e.sizes[n], e.sizes[n+1] = size, 300
		n += 2
	}
	e.sizes[n] = 5000
	n++
	for s := 0; s < n; s++ {
		e.publish(t, s, 0, int64(s), kafkaleg.MsgID(e.route.Topic, 0, int64(s)))
	}
	stop := e.run(1)
	defer stop()
	dead := e.accounted(t, n, nil)
	if !slices.Contains(dead, n-1) || slices.ContainsFunc(dead, func(s int) bool { return e.sizes[s] == 300 }) {
		t.Fatalf("dead letters %v: want the 5,000-byte one and none of 300", dead)
	}
}

// limitWhileRunning runs e.leg, has it archive seqs 0-2, sets a 1,500-byte limit on the topic while it runs and
// publishes seq 3 (3,000 bytes) and 4-5 (300). It returns the leg's stop and what was archived.
func (e *env) limitWhileRunning(t *testing.T) (func(), []harness.Record) {
	t.Helper()
	e.sizes = map[int]int{3: 3000}
	for s := 0; s < 3; s++ {
		e.publish(t, s, 0, int64(s), kafkaleg.MsgID(e.route.Topic, 0, int64(s)))
	}
	stop := e.run(1)
	recs := e.read(t, 3, 10*time.Second)
	if len(recs) != 3 {
		stop()
		t.Fatalf("archived %d of the first 3", len(recs))
	}
	e.setMaxMessageSize(t, 1500, "")
	time.Sleep(time.Second) // the broker applies a topic policy after it is stored
	for s := 3; s < 6; s++ {
		e.publish(t, s, 0, int64(s), kafkaleg.MsgID(e.route.Topic, 0, int64(s)))
	}
	return stop, recs
}

// TestLegBDeadLettersWhatTheBrokerRefusedUnderALimitSetWhileRunning: the limit is set while a session runs that does
// not re-read it; the broker refuses the large message, stores the small ones after it, and the client never
// answers. The next session sends it again from the ack floor, where the broker would refuse it again (or, with the
// limit gone, drop it by dedup as below the later offsets): it must go to the DLQ.
func TestLegBDeadLettersWhatTheBrokerRefusedUnderALimitSetWhileRunning(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	e.opts.PolicyInterval = time.Hour // this session never sees the new limit
	e.leg = pulsarleg.New(e.opts)
	stop, recs := e.limitWhileRunning(t)
	after := e.read(t, 3, 10*time.Second)
	t.Logf("archived while the large one was unanswered: %d (2 when the broker refused it)", len(after))
	stop()

	e.leg = pulsarleg.New(e.opts)
	stop = e.run(1)
	defer stop()
	rest := e.read(t, 6, 10*time.Second)
	recs = append(append(recs, after...), rest...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	letters, err := harness.ReadDeadLetters(ctx, e.brokers, e.dlqTopic, 1)
	if err != nil {
		t.Fatalf("the refused message was not dead-lettered: %v", err)
	}
	if seq, _ := harness.Seq(letters[0].Value); seq != 3 || harness.Headers(letters[0])[dlq.HeaderReason] != "too_large" {
		t.Fatalf("dead letter: seq %d, headers %v", seq, harness.Headers(letters[0]))
	}
	if v := harness.Judge(6, recs); v.Lost != 1 || v.Total != 5 || v.Duplicated != 0 || v.OutOfOrder != 0 {
		t.Fatalf("archive: %v; want all but seq 3", v)
	}
	waitAcked(t, e, 1)
}

// TestLegBRereadsTheLimitWhileRunning: the limit is set while a session runs. Whether the session re-reads it before
// the large message goes out (dead-lettered at once) or after (the broker refused it, the producer stalls, and the
// lower limit ends the session so that the next one dead-letters it), nothing is lost and everything gets acked.
func TestLegBRereadsTheLimitWhileRunning(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	e.opts.PolicyInterval = 2 * time.Second
	e.leg = pulsarleg.New(e.opts)
	stop, recs := e.limitWhileRunning(t)
	defer stop()
	if dead := e.accounted(t, 6, recs); !slices.Equal(dead, []int{3}) {
		t.Fatalf("dead letters %v, want seq 3", dead)
	}
}

// TestLegBHonoursAGlobalTopicPolicy: the broker enforces a topic's global max message size as well when it has no
// local one, and the admin API shows it only when asked for the global policy.
func TestLegBHonoursAGlobalTopicPolicy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.setMaxMessageSize(t, 1500, "?isGlobal=true")
	e.opts.MaxMessageSize = pulsarleg.AdminMaxMessageSize(e.admin, http.DefaultClient)
	e.leg = pulsarleg.New(e.opts)
	e.sizes = map[int]int{1: 3000}
	for s := 0; s < 3; s++ {
		e.publish(t, s, 0, int64(s), kafkaleg.MsgID(e.route.Topic, 0, int64(s)))
	}
	stop := e.run(1)
	defer stop()
	if dead := e.accounted(t, 3, nil); !slices.Equal(dead, []int{1}) {
		t.Fatalf("dead letters %v, want seq 1", dead)
	}
}

// TestLegBSessionsShareTheLimitReadings: the sessions of a topic's partitions share their periodic readings of its max
// message size, so three sessions read it about once per PolicyInterval, not three times (the bridge's nine sessions
// made 1.8 admin requests a second). The bound is generous: 1.5 readings per interval (a reading younger than nine
// tenths of it is shared, and two sessions may tick together) plus each session's own first reading; without the
// sharing the three make 3 per interval.
func TestLegBSessionsShareTheLimitReadings(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var reads atomic.Int64
	e.opts.MaxMessageSize = func(context.Context, string) (int, error) {
		reads.Add(1)
		return 0, nil
	}
	e.opts.PolicyInterval = 100 * time.Millisecond
	e.leg = pulsarleg.New(e.opts)
	start := time.Now()
	stop := e.run(3)
	time.Sleep(3 * time.Second)
	stop()
	took := time.Since(start)
	if n, most := reads.Load(), 3+int64(1.5*float64(took)/float64(e.opts.PolicyInterval)); n > most {
		t.Fatalf("%d readings of the limit by 3 sessions in %v with PolicyInterval %v, want at most %d",
			n, took, e.opts.PolicyInterval, most)
	}
	t.Logf("%d readings in %v", reads.Load(), took)
}
