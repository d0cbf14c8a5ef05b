package main

// What the shutdown tests need to run the binary as a process and watch it stop. This file is the same in
// services/order/cmd/order and services/payment/cmd/payment; each test file names the service and childEnv.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
)

// env is one test's private world on the shared servers: a fresh database, a private stream, a token issuer and a
// version unique to the test (to find its instances in etcd). vars are the binary's environment.
type env struct {
	vars    []string
	version string
	issuer  *svctest.Issuer
	stream  *svctest.Stream
	db      *gorm.DB
	etcd    *clientv3.Client
}

func newEnv(t *testing.T, vars ...string) *env {
	t.Helper()
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, strings.ToUpper(service)+"_STOP")
	dbURL := testenv.Postgres(t)
	db, err := database.Open(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Closer(db)() })
	etcd, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	// Registered after the stream's own cleanup, so it runs before the stream is deleted: what the consumer had
	// left, for a failed test's reader.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		c, err := stream.JS.Consumer(context.Background(), stream.Name, service)
		if err != nil {
			t.Logf("consumer %s: %v", service, err)
			return
		}
		if ci, err := c.Info(context.Background()); err == nil {
			t.Logf("consumer %s: %d pending, %d waiting for an ack, %d redelivered, ack floor %d",
				service, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.AckFloor.Stream)
		}
	})
	version := "stop-" + svctest.Random(4)
	vars = append([]string{
		"DATABASE_URL=" + dbURL, "NATS_URL=" + testenv.NATS(t),
		"KAFKA_BROKERS=" + strings.Join(testenv.Kafka(t), ","), "ETCD_ENDPOINTS=" + strings.Join(testenv.Etcd(t), ","),
		"JWKS_URL=" + issuer.URL, "NATS_STREAM=" + stream.Name, "NATS_SUBJECT_PREFIX=" + stream.Prefix,
		"SERVICE_VERSION=" + version, "ADMIN_ADDR=", "LOG_LEVEL=info", "SHUTDOWN_TIMEOUT=10s",
	}, vars...)
	return &env{vars: vars, version: version, issuer: issuer, stream: stream, db: db, etcd: etcd}
}

func (e *env) token(t *testing.T, user string) string { return e.issuer.Token(t, user) }

// watchDeregistration follows this test's instance in etcd as a caller's resolver does: the channel is closed when
// its key is deleted.
func (e *env) watchDeregistration(t *testing.T) <-chan struct{} {
	t.Helper()
	resp, err := e.etcd.Get(context.Background(), discovery.Prefix+service+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var key string
	for _, kv := range resp.Kvs {
		var in discovery.Instance
		if json.Unmarshal(kv.Value, &in) == nil && in.Version == e.version {
			key = string(kv.Key)
		}
	}
	if key == "" {
		t.Fatal("the instance is not registered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := e.etcd.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1))
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for r := range w {
			for _, ev := range r.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return
				}
			}
		}
	}()
	return gone
}

// lockTable locks table against every other statement until the returned release is called, runs then (if any), and
// waits until a statement of the service waits for the lock: its request or message is in hand until the release.
func (e *env) lockTable(t *testing.T, table string, then ...func()) (release func()) {
	t.Helper()
	tx := e.db.Begin()
	if err := tx.Exec("LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback().Error }) }
	t.Cleanup(release)
	for _, f := range then {
		f()
	}
	runtest.Eventually(t, 10*time.Second, "a statement to wait for the lock on "+table, func() bool {
		var waiting int64
		err := e.db.Raw("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = ?::regclass", table).Scan(&waiting).Error
		if err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	})
	return release
}

// refused waits until a new connection to addr is refused: the listener is closed, and nothing hangs.
func refused(t *testing.T, addr string) {
	t.Helper()
	runtest.Eventually(t, 5*time.Second, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return false
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a new connection after SIGTERM: %v, want refused", err)
		}
		return true
	})
}

// unsent counts outbox rows not yet marked sent.
func (e *env) unsent(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := e.db.Table("outbox").Where("sent_at IS NULL").Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// stopWhileRelayClaims waits until the relay of in has claimed outbox rows (and, with silentBroker as Kafka, waits for
// the broker's answer), stops in, and wants all n rows still unsent: never marked without being published.
func (e *env) stopWhileRelayClaims(t *testing.T, in *instance, n int64) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, "the relay to claim the rows", func() bool {
		var leased int64
		err := e.db.Table("outbox").Where("sent_at IS NULL AND next_attempt_at > ?", time.Now().UnixMilli()).Count(&leased).Error
		if err != nil {
			t.Fatal(err)
		}
		return leased > 0
	})
	in.stop(t)
	if unsent := e.unsent(t); unsent != n {
		t.Fatalf("%d of %d rows unsent after a stop during which Kafka never answered", unsent, n)
	}
}

// nextInstanceSendsAll starts the binary again, waits until its relay has sent every outbox row, stops it, and wants
// every row's event on Kafka.
func (e *env) nextInstanceSendsAll(t *testing.T, tail *kafkaTail) {
	t.Helper()
	next := e.start(t)
	e.allSent(t)
	next.stop(t)
	e.everyRowInKafka(t, tail)
}

// endLeases reports the outbox rows a stopped instance left unsent, and how many of them are still leased to its
// relay: rows it claimed and did not publish when the stop cancelled it in the middle of a claim. pkg/outbox then
// keeps them from every relay for RelayOptions.Lease (25 s), as after a crash, so they are left for the next relay
// but late. The lease is ended here, as its running out would end it, so the next instance sends them now.
func (e *env) endLeases(t *testing.T) (unsent, leased int64) {
	t.Helper()
	unsent = e.unsent(t)
	res := e.db.Exec("UPDATE outbox SET next_attempt_at = 0 WHERE sent_at IS NULL AND attempts = 0 AND next_attempt_at > ?",
		time.Now().UnixMilli())
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	return unsent, res.RowsAffected
}

// allSent waits until every outbox row is marked sent; if that does not happen, it names the rows left and their state.
func (e *env) allSent(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.unsent(t) > 0 {
		if time.Now().After(deadline) {
			var rows []struct {
				ID, NextAttemptAt int64
				Attempts          int
				LastError         string
			}
			if err := e.db.Table("outbox").Where("sent_at IS NULL").Find(&rows).Error; err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				t.Logf("unsent row %d: attempts %d, due in %v, last error %q", r.ID, r.Attempts,
					time.Until(time.UnixMilli(r.NextAttemptAt)).Round(time.Millisecond), r.LastError)
			}
			t.Fatalf("%d outbox rows still unsent after 10 s", len(rows))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// everyRowInKafka wants every outbox row's event on the topic since tail was taken (duplicates allowed).
func (e *env) everyRowInKafka(t *testing.T, tail *kafkaTail) {
	t.Helper()
	var rows []struct{ EventID, Topic string }
	if err := e.db.Table("outbox").Select("event_id, topic").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	seen := tail.eventIDs(t)
	for _, r := range rows {
		if r.Topic != tail.topic {
			t.Fatalf("outbox row for topic %s; this test reads %s", r.Topic, tail.topic)
		}
		if !seen[r.EventID] {
			t.Fatalf("event %s is marked sent but not on %s (%d rows, %d events seen)", r.EventID, tail.topic, len(rows), len(seen))
		}
	}
}

// instance is one run of the binary.
type instance struct {
	cmd    *exec.Cmd
	addr   string
	logs   *lockedBuffer
	exited chan struct{}
	err    error // the process's exit, once exited is closed
}

// start runs the binary on a free port and waits until /readyz answers 200; vars override the test's environment. The
// process is killed when the test ends if it is still running.
func (e *env) start(t *testing.T, vars ...string) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	in := &instance{addr: addr, logs: &lockedBuffer{}, exited: make(chan struct{})}
	in.cmd = exec.Command(os.Args[0])
	in.cmd.Env = append(append(append(os.Environ(), e.vars...), vars...), childEnv+"=1", "HTTP_ADDR="+addr)
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.err = in.cmd.Wait(); close(in.exited) }()
	t.Cleanup(func() {
		_ = in.cmd.Process.Kill()
		<-in.exited
		if t.Failed() {
			t.Logf("log of the instance on %s:\n%s", addr, in.logs.String())
		}
	})
	runtest.Eventually(t, 15*time.Second, "/readyz 200 from the started binary", func() bool {
		select {
		case <-in.exited:
			t.Fatalf("the binary exited before it was ready: %v", in.err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return in
}

func (in *instance) terminate(t *testing.T) {
	t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.terminate(t)
	in.waitExit(t)
}

// waitLog waits until the process has logged a line containing text.
func (in *instance) waitLog(t *testing.T, text string) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, "the log line "+text, func() bool { return strings.Contains(in.logs.String(), text) })
}

// waitExit wants the process to end by itself after SIGTERM, with status 0 and no failed shutdown step.
func (in *instance) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-in.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the binary still runs 15 s after SIGTERM")
	}
	if in.err != nil {
		t.Fatalf("the binary exited with %v after SIGTERM", in.err)
	}
	if l := in.logs.String(); strings.Contains(l, "shutdown step failed") {
		t.Fatalf("a shutdown step failed:\n%s", l)
	}
}

// stopUnderLoad runs the binary, has clients that follow discovery send requests (send, each client with a token of
// its own), and stops it with SIGTERM while table is locked, so requests are certainly in flight when the signal
// arrives. It wants every request answered with want once the lock is released, after the listener has closed; a
// caller that picked the instance just before it left etcd served too; new connections refused afterwards, not left
// hanging; and the process to exit cleanly. It returns how many requests were answered.
func (e *env) stopUnderLoad(t *testing.T, table string, want int, send func(c *http.Client, addr, token string) (int, error)) int {
	t.Helper()
	in := e.start(t)
	tokens := make([]string, 9) // one user per client and one for the late caller; signed here, since a client may not fail the test
	for i := range tokens {
		tokens[i] = e.token(t, fmt.Sprintf("load-%d", i))
	}
	deregistered := e.watchDeregistration(t)
	load := startLoad(deregistered, len(tokens)-1, func(c *http.Client, i int) (int, error) { return send(c, in.addr, tokens[i]) })
	runtest.Eventually(t, 10*time.Second, "50 answers under load", func() bool { return load.answered() >= 50 })
	release := e.lockTable(t, table)
	in.terminate(t)
	select {
	case <-deregistered:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance is still registered 5 s after SIGTERM")
	}
	late := make(chan error, 1)
	go func() {
		status, err := send(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, in.addr, tokens[len(tokens)-1])
		if err == nil && status != want {
			err = fmt.Errorf("answered %d", status)
		}
		late <- err
	}()
	refused(t, in.addr)
	release()
	if err := <-late; err != nil {
		t.Fatalf("a caller that saw the instance leave etcd a moment ago: %v", err)
	}
	answered := load.wait(t, want)
	in.waitExit(t)
	return answered + 1
}

// load runs clients that send requests until the instance leaves discovery, as callers that pick instances from etcd
// (the gateway) do. Each request is on a new connection: one that is not reused cannot be retried by the transport,
// so every reset shows.
type load struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	statuses map[int]int
	failures []string
}

func startLoad(deregistered <-chan struct{}, clients int, send func(c *http.Client, i int) (int, error)) *load {
	l := &load{statuses: map[int]int{}}
	for i := range clients {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		l.wg.Go(func() {
			for {
				select {
				case <-deregistered:
					return
				default:
				}
				status, err := send(c, i)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, err.Error())
				} else {
					l.statuses[status]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) answered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.statuses {
		n += c
	}
	return n
}

// wait waits for the clients to stop and wants every request answered with want; it returns how many.
func (l *load) wait(t *testing.T, want int) int {
	t.Helper()
	l.wg.Wait()
	if len(l.failures) > 0 {
		t.Fatalf("%d requests got no answer: %s", len(l.failures), strings.Join(l.failures, "; "))
	}
	for status, n := range l.statuses {
		if status != want {
			t.Fatalf("%d requests answered %d (all answers: %v)", n, status, l.statuses)
		}
	}
	return l.statuses[want]
}

// kafkaTail reads a topic from the end offsets it had when the tail was taken.
type kafkaTail struct {
	brokers []string
	topic   string
	start   map[int]int64
}

func tailKafka(t *testing.T, topic string) *kafkaTail {
	t.Helper()
	k := &kafkaTail{brokers: testenv.Kafka(t), topic: topic}
	k.start = k.ends(t)
	return k
}

// ends returns each partition's end offset.
func (k *kafkaTail) ends(t *testing.T) map[int]int64 {
	t.Helper()
	conn, err := kafka.Dial("tcp", k.brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(k.topic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int]int64{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(context.Background(), "tcp", k.brokers[0], k.topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		ends[p.ID], err = lc.ReadLastOffset()
		_ = lc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return ends
}

// eventIDs returns the CloudEvents ids of everything written to the topic since the tail was taken.
func (k *kafkaTail) eventIDs(t *testing.T) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for p, end := range k.ends(t) {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.brokers, Topic: k.topic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(k.start[p]); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for off := k.start[p]; off < end; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s[%d] at %d of %d: %v", k.topic, p, off, end, err)
			}
			off = m.Offset + 1
			ids[svctest.HeaderMap(m.Headers)[event.HeaderID]] = true
		}
		cancel()
		_ = r.Close()
	}
	return ids
}

// silentBroker is the address of a Kafka stand-in that accepts connections and reads, but never answers: a publish to
// it waits until its context ends.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() })
		}
	}()
	return ln.Addr().String()
}

// lockedBuffer collects a process's log while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
