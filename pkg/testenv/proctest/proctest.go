// Package proctest runs a service binary as a process on the real test servers and watches it stop: the harness of
// the SIGTERM tests of services/order/cmd/order and services/payment/cmd/payment. The binary is the test binary
// itself: with Binary.ChildEnv set, Binary.Main (the package's TestMain) runs the service's main instead of the
// tests, so the process is main's own wiring, environment and signal handling, without a separate build.
//
// Each test gets an Env (a fresh database, a private stream, a token issuer, a version of its own in etcd), starts
// Instances in it, stops them with SIGTERM and checks what they left: requests answered, the listener closed, the
// instance gone from etcd, outbox rows sent or left claimable, every sent row's event on Kafka. What each service
// checks of its own data stays in its tests. It is for tests only, and a package of its own because it execs and
// signals processes, which svctest's in-process users do not need.
package proctest

import (
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

// Binary is the service under test: Name is its name in discovery and its consumer's durable name; ChildEnv is the
// variable that, set to 1, makes the test binary run the service's main.
type Binary struct {
	Name     string
	ChildEnv string
}

// Main is the TestMain of a package whose tests run b: in a child started by Env.Start it runs main and exits 0
// when main returns; otherwise it runs the tests.
func (b Binary) Main(m *testing.M, main func()) {
	if os.Getenv(b.ChildEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Env is one test's private world on the shared servers: a fresh database, a private stream, a token issuer and a
// version unique to the test (to find its instances in etcd). DB, Stream and Etcd are there for the test's own
// set-up and checks.
type Env struct {
	DB     *gorm.DB
	Stream *svctest.Stream
	Etcd   *clientv3.Client

	binary  Binary
	vars    []string // the binary's environment
	version string
	issuer  *svctest.Issuer
}

// NewEnv makes the test's world for b; vars are added to (and override) the environment every instance of b gets.
func NewEnv(t testing.TB, b Binary, vars ...string) *Env {
	t.Helper()
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, strings.ToUpper(b.Name)+"_STOP")
	dbURL := testenv.Postgres(t)
	db, err := database.Open(dbURL)
	if err != nil {
		t.Fatalf("proctest: open the test database: %v", err)
	}
	t.Cleanup(func() { _ = database.Closer(db)() })
	etcd, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("proctest: etcd client: %v", err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	// Registered after the stream's own cleanup, so it runs before the stream is deleted: what the consumer had
	// left, for a failed test's reader.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		c, err := stream.JS.Consumer(context.Background(), stream.Name, b.Name)
		if err != nil {
			t.Logf("consumer %s: %v", b.Name, err)
			return
		}
		if ci, err := c.Info(context.Background()); err == nil {
			t.Logf("consumer %s: %d pending, %d waiting for an ack, %d redelivered, ack floor %d",
				b.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.AckFloor.Stream)
		}
	})
	version := "stop-" + svctest.Random(4)
	vars = append([]string{
		"DATABASE_URL=" + dbURL, "NATS_URL=" + testenv.NATS(t),
		"KAFKA_BROKERS=" + strings.Join(testenv.Kafka(t), ","), "ETCD_ENDPOINTS=" + strings.Join(testenv.Etcd(t), ","),
		"JWKS_URL=" + issuer.URL, "NATS_STREAM=" + stream.Name, "NATS_SUBJECT_PREFIX=" + stream.Prefix,
		"SERVICE_VERSION=" + version, "ADMIN_ADDR=", "LOG_LEVEL=info", "SHUTDOWN_TIMEOUT=10s",
	}, vars...)
	return &Env{DB: db, Stream: stream, Etcd: etcd, binary: b, vars: vars, version: version, issuer: issuer}
}

// Token signs a token for user with the issuer the binary trusts.
func (e *Env) Token(t testing.TB, user string) string { return e.issuer.Token(t, user) }

// watchDeregistration follows this test's instance in etcd as a caller's resolver does: the channel is closed when
// its key is deleted.
func (e *Env) watchDeregistration(t testing.TB) <-chan struct{} {
	t.Helper()
	resp, err := e.Etcd.Get(context.Background(), discovery.Prefix+e.binary.Name+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("proctest: list the instances in etcd: %v", err)
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
	w := e.Etcd.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1))
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

// LockTable locks table against every other statement until the returned release is called, runs then (if any), and
// waits until a statement of the service waits for the lock: its request or message is in hand until the release.
func (e *Env) LockTable(t testing.TB, table string, then ...func()) (release func()) {
	t.Helper()
	tx := e.DB.Begin()
	if err := tx.Exec("LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE").Error; err != nil {
		t.Fatalf("proctest: lock %s: %v", table, err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback().Error }) }
	t.Cleanup(release)
	for _, f := range then {
		f()
	}
	runtest.Eventually(t, 10*time.Second, "a statement to wait for the lock on "+table, func() bool {
		var waiting int64
		err := e.DB.Raw("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = ?::regclass", table).Scan(&waiting).Error
		if err != nil {
			t.Fatalf("proctest: count the statements waiting for %s: %v", table, err)
		}
		return waiting > 0
	})
	return release
}

// refused waits until a new connection to addr is refused: the listener is closed, and nothing hangs.
func refused(t testing.TB, addr string) {
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
func (e *Env) unsent(t testing.TB) int64 {
	t.Helper()
	var n int64
	if err := e.DB.Table("outbox").Where("sent_at IS NULL").Count(&n).Error; err != nil {
		t.Fatalf("proctest: count unsent outbox rows: %v", err)
	}
	return n
}

// StopWhileRelayClaims waits until the relay of in has claimed outbox rows (and, with SilentBroker as Kafka, waits for
// the broker's answer), stops in, and wants all n rows still unsent: never marked without being published.
func (e *Env) StopWhileRelayClaims(t testing.TB, in *Instance, n int64) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, "the relay to claim the rows", func() bool {
		var leased int64
		err := e.DB.Table("outbox").Where("sent_at IS NULL AND next_attempt_at > ?", time.Now().UnixMilli()).Count(&leased).Error
		if err != nil {
			t.Fatalf("proctest: count leased outbox rows: %v", err)
		}
		return leased > 0
	})
	in.Stop(t)
	if unsent := e.unsent(t); unsent != n {
		t.Fatalf("%d of %d rows unsent after a stop during which Kafka never answered", unsent, n)
	}
}

// NextInstanceSendsAll starts the binary again, waits until its relay has sent every outbox row, stops it, and wants
// every row's event on Kafka.
func (e *Env) NextInstanceSendsAll(t testing.TB, tail *KafkaTail) {
	t.Helper()
	next := e.Start(t)
	e.AllSent(t)
	next.Stop(t)
	e.EveryRowInKafka(t, tail)
}

// EndLeases reports the outbox rows a stopped instance left unsent, and how many of them are still leased to its
// relay. A stopping pkg/outbox relay hands back what it claimed and did not publish, so that is none unless its
// statements outlasted the stop's grace (a database that stopped answering): such rows wait out RelayOptions.Lease
// (25 s), as after a crash. The lease is ended here, as its running out would end it, so the next instance sends
// them now.
func (e *Env) EndLeases(t testing.TB) (unsent, leased int64) {
	t.Helper()
	unsent = e.unsent(t)
	res := e.DB.Exec("UPDATE outbox SET next_attempt_at = 0 WHERE sent_at IS NULL AND attempts = 0 AND next_attempt_at > ?",
		time.Now().UnixMilli())
	if res.Error != nil {
		t.Fatalf("proctest: end the outbox leases: %v", res.Error)
	}
	return unsent, res.RowsAffected
}

// AllSent waits until every outbox row is marked sent; if that does not happen, it names the rows left and their state.
func (e *Env) AllSent(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.unsent(t) > 0 {
		if time.Now().After(deadline) {
			var rows []struct {
				ID, NextAttemptAt int64
				Attempts          int
				LastError         string
			}
			if err := e.DB.Table("outbox").Where("sent_at IS NULL").Find(&rows).Error; err != nil {
				t.Fatalf("proctest: read the unsent outbox rows: %v", err)
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

// EveryRowInKafka wants every outbox row's event on the topic since tail was taken (duplicates allowed).
func (e *Env) EveryRowInKafka(t testing.TB, tail *KafkaTail) {
	t.Helper()
	var rows []struct{ EventID, Topic string }
	if err := e.DB.Table("outbox").Select("event_id, topic").Find(&rows).Error; err != nil {
		t.Fatalf("proctest: read the outbox rows: %v", err)
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

// Instance is one run of the binary; Addr is where it serves HTTP.
type Instance struct {
	Addr   string
	cmd    *exec.Cmd
	logs   *testenv.LogBuffer
	exited chan struct{}
	err    error // the process's exit, once exited is closed
}

// Start runs the binary on a free port and waits until /readyz answers 200; vars override the test's environment. The
// process is killed when the test ends if it is still running.
func (e *Env) Start(t testing.TB, vars ...string) *Instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proctest: find a free port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	in := &Instance{Addr: addr, logs: &testenv.LogBuffer{}, exited: make(chan struct{})}
	in.cmd = exec.Command(os.Args[0])
	in.cmd.Env = append(append(append(os.Environ(), e.vars...), vars...), e.binary.ChildEnv+"=1", "HTTP_ADDR="+addr)
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatalf("proctest: start the binary: %v", err)
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

// Exited is closed when the process has ended.
func (in *Instance) Exited() <-chan struct{} { return in.exited }

// Terminate sends SIGTERM and returns at once.
func (in *Instance) Terminate(t testing.TB) {
	t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("proctest: SIGTERM: %v", err)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (in *Instance) Stop(t testing.TB) {
	t.Helper()
	in.Terminate(t)
	in.WaitExit(t)
}

// WaitLog waits until the process has logged a line containing text.
func (in *Instance) WaitLog(t testing.TB, text string) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, "the log line "+text, func() bool { return strings.Contains(in.logs.String(), text) })
}

// WaitExit wants the process to end by itself after SIGTERM, with status 0 and no failed shutdown step.
func (in *Instance) WaitExit(t testing.TB) {
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

// StopUnderLoad runs the binary, has clients that follow discovery send requests (send, each client with a token of
// its own), and stops it with SIGTERM while table is locked, so requests are certainly in flight when the signal
// arrives. It wants every request answered with want once the lock is released, after the listener has closed; a
// caller that picked the instance just before it left etcd served too; new connections refused afterwards, not left
// hanging; and the process to exit cleanly. It returns how many requests were answered.
func (e *Env) StopUnderLoad(t testing.TB, table string, want int, send func(c *http.Client, addr, token string) (int, error)) int {
	t.Helper()
	in := e.Start(t)
	tokens := make([]string, 9) // one user per client and one for the late caller; signed here, since a client may not fail the test
	for i := range tokens {
		tokens[i] = e.Token(t, fmt.Sprintf("load-%d", i))
	}
	deregistered := e.watchDeregistration(t)
	load := startLoad(deregistered, len(tokens)-1, func(c *http.Client, i int) (int, error) { return send(c, in.Addr, tokens[i]) })
	runtest.Eventually(t, 10*time.Second, "50 answers under load", func() bool { return load.answered() >= 50 })
	release := e.LockTable(t, table)
	in.Terminate(t)
	select {
	case <-deregistered:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance is still registered 5 s after SIGTERM")
	}
	late := make(chan error, 1)
	go func() {
		status, err := send(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, in.Addr, tokens[len(tokens)-1])
		if err == nil && status != want {
			err = fmt.Errorf("answered %d", status)
		}
		late <- err
	}()
	refused(t, in.Addr)
	release()
	if err := <-late; err != nil {
		t.Fatalf("a caller that saw the instance leave etcd a moment ago: %v", err)
	}
	answered := load.wait(t, want)
	in.WaitExit(t)
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
func (l *load) wait(t testing.TB, want int) int {
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

// KafkaTail reads a topic from the end offsets it had when the tail was taken.
type KafkaTail struct {
	brokers []string
	topic   string
	start   map[int]int64
}

// TailKafka records the end offsets of topic on the Kafka test server.
func TailKafka(t testing.TB, topic string) *KafkaTail {
	t.Helper()
	k := &KafkaTail{brokers: testenv.Kafka(t), topic: topic}
	k.start = k.ends(t)
	return k
}

// ends returns each partition's end offset.
func (k *KafkaTail) ends(t testing.TB) map[int]int64 {
	t.Helper()
	conn, err := kafka.Dial("tcp", k.brokers[0])
	if err != nil {
		t.Fatalf("proctest: dial Kafka: %v", err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(k.topic)
	if err != nil {
		t.Fatalf("proctest: partitions of %s: %v", k.topic, err)
	}
	ends := map[int]int64{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(context.Background(), "tcp", k.brokers[0], k.topic, p.ID)
		if err != nil {
			t.Fatalf("proctest: dial the leader of %s[%d]: %v", k.topic, p.ID, err)
		}
		ends[p.ID], err = lc.ReadLastOffset()
		_ = lc.Close()
		if err != nil {
			t.Fatalf("proctest: end offset of %s[%d]: %v", k.topic, p.ID, err)
		}
	}
	return ends
}

// eventIDs returns the CloudEvents ids of everything written to the topic since the tail was taken.
func (k *KafkaTail) eventIDs(t testing.TB) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for p, end := range k.ends(t) {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.brokers, Topic: k.topic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(k.start[p]); err != nil {
			t.Fatalf("proctest: seek %s[%d] to %d: %v", k.topic, p, k.start[p], err)
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

// SilentBroker is the address of a Kafka stand-in that accepts connections and reads, but never answers: a publish to
// it waits until its context ends.
func SilentBroker(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proctest: listen for the silent broker: %v", err)
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
