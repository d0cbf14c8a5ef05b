// Package faulttest is the bridge's fault test: it produces N keyed messages
// over several partitions while killing bridge instances with SIGKILL,
// killing and restarting a private nats-server, restarting Pulsar through a
// given command, and adding a second bridge instance to force a rebalance;
// then it reads the Pulsar archive back and counts lost, duplicated and
// out-of-order messages.
//
// The bridge instances are this same executable re-run with SHANHAI_FAULTTEST_ROLE=bridge (see
// MaybeBridge), so the test exercises exactly the production wiring
// (internal/app) without a separate build step. The nats-server is private
// (random port, temporary store, sync_interval always) so that killing it does
// not disturb anyone else on the shared servers.
package faulttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/segmentio/kafka-go"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

const roleEnv = "SHANHAI_FAULTTEST_ROLE"

// MaybeBridge turns this process into a bridge instance when it was started
// as one by Run; it returns only in the parent. Call it first in main or
// TestMain.
func MaybeBridge() {
	if os.Getenv(roleEnv) != "bridge" {
		return
	}
	var cfg config.Config
	pkgconfig.MustLoad(&cfg)
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Options of one run.
type Options struct {
	N             int           // messages to produce
	Partitions    int           // Kafka partitions (>= 3)
	Size          int           // payload bytes
	Duration      time.Duration // how long production is spread over; faults happen inside it
	Brokers       []string
	PulsarURL     string
	PulsarRestart string // shell command restarting Pulsar; empty skips that fault (reported)
	NATSServer    string // nats-server binary (>= 2.10 for sync_interval)
	Kills         int    // SIGKILLs of a bridge instance (>= 2)
	Drain         time.Duration
	Out           io.Writer // progress log
	KeepDir       bool
}

// Report is what the run observed.
type Report struct {
	Verdict   harness.Verdict
	Events    []string
	Produce   time.Duration
	Converge  time.Duration
	Dir       string
	Generated int
}

func (o *Options) logf(format string, args ...any) {
	if o.Out != nil {
		fmt.Fprintf(o.Out, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// proc is a child process we may kill and restart.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: f}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop(timeout time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
	}
}

func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, url string) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Run performs one fault test.
func Run(ctx context.Context, o Options) (Report, error) {
	var rep Report
	if o.Partitions < 3 || o.Kills < 2 || o.N <= 0 {
		return rep, errors.New("faulttest: need partitions >= 3, kills >= 2, n > 0")
	}
	if o.NATSServer == "" {
		return rep, errors.New("faulttest: no nats-server >= 2.10 found (run scripts/deps.sh up nats, which builds one, or pass -nats-server)")
	}
	self, err := os.Executable()
	if err != nil {
		return rep, err
	}
	dir, err := os.MkdirTemp("", "bridge-faulttest-")
	if err != nil {
		return rep, err
	}
	rep.Dir = dir
	if !o.KeepDir {
		defer os.RemoveAll(dir)
	}
	// event is called from the fault schedule and from the Pulsar restart's own goroutine, which can finish while
	// the producer's last events are logged: the log is appended under a lock.
	var eventMu sync.Mutex
	event := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		eventMu.Lock()
		defer eventMu.Unlock()
		rep.Events = append(rep.Events, s)
		o.logf("%s", s)
	}

	// Private nats-server with fsync on every write.
	natsPort, err := freeport.Port()
	if err != nil {
		return rep, err
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(natsPort)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: %q\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", natsAddr, filepath.Join(dir, "js"))), 0o644); err != nil {
		return rep, err
	}
	var natsMu sync.Mutex
	startNATS := func() (*proc, error) {
		p, err := startProc("nats-server", filepath.Join(dir, "nats.log"), os.Environ(), o.NATSServer, "-c", conf)
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return p, waitTCP(wctx, natsAddr)
	}
	ns, err := startNATS()
	if err != nil {
		return rep, err
	}
	defer func() { natsMu.Lock(); ns.kill(); natsMu.Unlock() }()

	id := harness.ID()
	topic, dlqTopic := "faulttest."+id+".orders", "faulttest."+id+".dlq"
	for t, n := range map[string]int{topic: o.Partitions, dlqTopic: 1} {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := harness.CreateTopic(cctx, o.Brokers, t, n)
		cancel()
		if err != nil {
			return rep, err
		}
	}
	pulsarTopic := "persistent://shanhai/events/" + topic
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: o.PulsarURL, Logger: pulsarlog.DefaultNopLogger(), OperationTimeout: 60 * time.Second})
	if err != nil {
		return rep, err
	}
	defer client.Close()
	if err := harness.Hold(client, pulsarTopic); err != nil {
		return rep, err
	}
	event("topic %s (%d partitions), private nats-server %s, pulsar topic %s, dir %s", topic, o.Partitions, natsAddr, pulsarTopic, dir)

	// Bridge instances.
	baseEnv := append(os.Environ(),
		roleEnv+"=bridge",
		"NATS_URL=nats://"+natsAddr,
		"KAFKA_BROKERS="+strings.Join(o.Brokers, ","),
		"PULSAR_URL="+o.PulsarURL,
		"BRIDGE_TOPICS="+topic,
		"BRIDGE_STREAM=FAULT_"+id,
		"BRIDGE_STREAM_SUBJECTS=faulttest."+id+".>",
		"BRIDGE_GROUP=faulttest-"+id,
		"BRIDGE_DLQ_TOPIC="+dlqTopic,
		"BRIDGE_DUPLICATE_WINDOW=10m",
		"LOG_LEVEL=info",
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_METRICS_EXPORTER=none",
	)
	type instance struct {
		p    *proc
		addr string
	}
	var bmu sync.Mutex
	bridges := map[string]*instance{}
	startBridge := func(name string) error {
		ports, err := freeport.Ports(2)
		if err != nil {
			return err
		}
		port, aport := ports[0], ports[1]
		addr := "127.0.0.1:" + strconv.Itoa(port)
		// An empty ADMIN_ADDR means the default to pkg/config, so give each its own.
		p, err := startProc(name, filepath.Join(dir, name+".log"), append(baseEnv, "HTTP_ADDR="+addr, "ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(aport)), self)
		if err != nil {
			return err
		}
		bmu.Lock()
		bridges[name] = &instance{p: p, addr: addr}
		bmu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return waitHTTP(wctx, "http://"+addr+"/healthz")
	}
	defer func() {
		bmu.Lock()
		defer bmu.Unlock()
		for _, b := range bridges {
			b.p.stop(15 * time.Second)
		}
	}()
	if err := startBridge("bridge-1"); err != nil {
		return rep, err
	}
	event("bridge-1 started")

	// Producer, paced over o.Duration.
	var produced atomic.Int64
	prodErr := make(chan error, 1)
	prodStart := time.Now()
	go func() {
		w := harness.Writer(o.Brokers, topic)
		defer w.Close()
		const batch = 200
		per := o.Duration / time.Duration((o.N+batch-1)/batch)
		next := time.Now()
		for i := 0; i < o.N; i += batch {
			var msgs []kafka.Message
			for j := i; j < min(i+batch, o.N); j++ {
				msgs = append(msgs, harness.Event(j, 1000, o.Size))
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				prodErr <- fmt.Errorf("produce: %w", err)
				return
			}
			produced.Add(int64(len(msgs)))
			next = next.Add(per)
			time.Sleep(time.Until(next))
		}
		prodErr <- nil
	}()

	at := func(frac float64) {
		time.Sleep(time.Until(prodStart.Add(time.Duration(frac * float64(o.Duration)))))
	}
	killBridge := func(name string) error {
		bmu.Lock()
		b := bridges[name]
		bmu.Unlock()
		b.p.kill()
		event("SIGKILL %s at %d produced", name, produced.Load())
		if err := startBridge(name); err != nil {
			return err
		}
		event("%s restarted", name)
		return nil
	}
	pulsarDone := make(chan error, 1)
	faults := func() error {
		kills := 0
		at(0.10)
		if err := killBridge("bridge-1"); err != nil {
			return err
		}
		kills++
		at(0.25)
		natsMu.Lock()
		ns.kill()
		event("SIGKILL nats-server at %d produced", produced.Load())
		ns, err = startNATS()
		natsMu.Unlock()
		if err != nil {
			return err
		}
		event("nats-server restarted")
		at(0.40)
		if err := startBridge("bridge-2"); err != nil {
			return err
		}
		event("bridge-2 started (rebalance) at %d produced", produced.Load())
		at(0.55)
		for kills < o.Kills {
			if err := killBridge("bridge-1"); err != nil {
				return err
			}
			kills++
			time.Sleep(o.Duration / 20)
		}
		at(0.70)
		if o.PulsarRestart == "" {
			event("pulsar restart SKIPPED: no command given (-pulsar-restart)")
			pulsarDone <- nil
			return nil
		}
		event("pulsar restart: %s", o.PulsarRestart)
		go func() {
			start := time.Now()
			out, err := exec.CommandContext(ctx, "sh", "-c", o.PulsarRestart).CombinedOutput()
			if err != nil {
				pulsarDone <- fmt.Errorf("pulsar restart: %w: %s", err, lastLines(out, 5))
				return
			}
			event("pulsar restarted in %v", time.Since(start).Round(time.Second))
			pulsarDone <- nil
		}()
		return nil
	}
	if err := faults(); err != nil {
		return rep, err
	}
	if err := <-prodErr; err != nil {
		return rep, err
	}
	rep.Produce = time.Since(prodStart)
	rep.Generated = int(produced.Load())
	event("produced %d in %v", rep.Generated, rep.Produce.Round(time.Millisecond))
	if err := <-pulsarDone; err != nil {
		return rep, err
	}

	// Converge: read the archive until all N arrived, then a little longer
	// to catch duplicates that would arrive late.
	recs, err := readAll(ctx, client, pulsarTopic, o.N, o.Drain, o)
	rep.Converge = time.Since(prodStart) - rep.Produce
	if err != nil {
		return rep, err
	}
	rep.Verdict = harness.Judge(o.N, recs)
	event("verdict: %v", rep.Verdict)

	// Leave nothing behind on the shared Kafka.
	_ = deleteTopics(o.Brokers, topic, dlqTopic)
	return rep, nil
}

// readAll reads topic until n records arrived and no more came for a grace
// period, or until drain passed without progress.
func readAll(ctx context.Context, client pulsar.Client, topic string, n int, drain time.Duration, o Options) ([]harness.Record, error) {
	r, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: harness.Subscription, Type: pulsar.Exclusive,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest, ReceiverQueueSize: 5000})
	if err != nil {
		return nil, fmt.Errorf("pulsar subscribe: %w", err)
	}
	defer r.Close()
	var out []harness.Record
	lastProgress := time.Now()
	lastLog := time.Now()
	for {
		idle := 2 * time.Second
		rctx, cancel := context.WithTimeout(ctx, idle)
		m, err := r.Receive(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			if len(out) >= n && time.Since(lastProgress) > 5*time.Second {
				return out, nil
			}
			if time.Since(lastProgress) > drain {
				o.logf("no progress for %v with %d of %d archived; judging what is there", drain, len(out), n)
				return out, nil
			}
			continue
		}
		lastProgress = time.Now()
		_ = r.Ack(m)
		out = append(out, harness.ToRecord(m))
		if time.Since(lastLog) > 5*time.Second {
			o.logf("archived so far: %d of %d", len(out), n)
			lastLog = time.Now()
		}
	}
}

func deleteTopics(brokers []string, topics ...string) error {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	_, err := c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	return err
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
