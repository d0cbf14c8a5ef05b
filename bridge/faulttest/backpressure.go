package faulttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// BackpressureOptions configure the sink-down test.
type BackpressureOptions struct {
	Warmup, N  int    // messages before and during the outage
	Size       int    // payload bytes
	Outage     string // shell command that makes Pulsar unavailable and returns once it is back
	RSSBound   int64  // bytes the bridge's RSS must stay under
	Brokers    []string
	PulsarURL  string
	NATSServer string
	Out        *os.File
}

// BackpressureReport is what the sink-down test saw.
type BackpressureReport struct {
	Verdict            harness.Verdict
	RSSBefore, RSSPeak int64
	// RSSHighWater is the bridge's VmHWM once everything is archived: the peak of its whole life, including the
	// catch-up after Pulsar returns, which the samples (taken only during the outage) do not see. It counts the
	// executable's mapped pages too, and this one (the test binary re-run) is larger than the image's; AnonPeak, the
	// sampled peak of RssAnon (heap, stacks), and RSSFile, RssFile at the end, tell the two apart.
	RSSHighWater, AnonPeak, RSSFile int64
	LagDuringOutage                 bool // Kafka kept the backlog: JetStream grew, Pulsar did not
	RecoverAfterOutage              time.Duration
	Events                          []string
}

// RunBackpressure starts one bridge, takes Pulsar away for the outage while
// producing, samples the bridge's RSS, brings Pulsar back and checks that
// everything arrives exactly once and in order.
func RunBackpressure(ctx context.Context, o BackpressureOptions) (BackpressureReport, error) {
	var rep BackpressureReport
	if o.Outage == "" {
		return rep, errors.New("backpressure: need the Pulsar outage command")
	}
	logf := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		rep.Events = append(rep.Events, s)
		if o.Out != nil {
			fmt.Fprintf(o.Out, "%s %s\n", time.Now().Format("15:04:05.000"), s)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return rep, err
	}
	dir, err := os.MkdirTemp("", "bridge-backpressure-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	natsPort, err := freeport.Port()
	if err != nil {
		return rep, err
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(natsPort)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: %q\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", natsAddr, filepath.Join(dir, "js"))), 0o644); err != nil {
		return rep, err
	}
	ns, err := startProc("nats-server", filepath.Join(dir, "nats.log"), os.Environ(), o.NATSServer, "-c", conf)
	if err != nil {
		return rep, err
	}
	defer ns.kill()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = waitTCP(wctx, natsAddr)
	cancel()
	if err != nil {
		return rep, err
	}
	id := harness.ID()
	topic := "backpressure." + id + ".orders"
	for t, n := range map[string]int{topic: 3, "backpressure." + id + ".dlq": 1} {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := harness.CreateTopic(cctx, o.Brokers, t, n)
		cancel()
		if err != nil {
			return rep, err
		}
	}
	defer func() { _ = deleteTopics(o.Brokers, topic, "backpressure."+id+".dlq") }()
	ports, err := freeport.Ports(2)
	if err != nil {
		return rep, err
	}
	port, aport := ports[0], ports[1]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := append(os.Environ(), roleEnv+"=bridge", "NATS_URL=nats://"+natsAddr, "KAFKA_BROKERS="+strings.Join(o.Brokers, ","),
		"PULSAR_URL="+o.PulsarURL, "BRIDGE_TOPICS="+topic, "BRIDGE_STREAM=BP_"+id, "BRIDGE_STREAM_SUBJECTS=backpressure."+id+".>",
		"BRIDGE_GROUP=backpressure-"+id, "BRIDGE_DLQ_TOPIC=backpressure."+id+".dlq", "HTTP_ADDR="+addr,
		"ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(aport), "LOG_LEVEL=info", "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	b, err := startProc("bridge", filepath.Join(dir, "bridge.log"), env, self)
	if err != nil {
		return rep, err
	}
	defer b.stop(15 * time.Second)
	wctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	err = waitHTTP(wctx, "http://"+addr+"/healthz")
	cancel()
	if err != nil {
		return rep, err
	}
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: o.PulsarURL, Logger: pulsarlog.DefaultNopLogger(), OperationTimeout: 120 * time.Second})
	if err != nil {
		return rep, err
	}
	defer client.Close()
	pulsarTopic := "persistent://shanhai/events/" + topic
	if err := harness.Hold(client, pulsarTopic); err != nil {
		return rep, err
	}

	w := harness.Writer(o.Brokers, topic)
	defer w.Close()
	produce := func(from, to int) error {
		for i := from; i < to; i += 500 {
			var msgs []kafka.Message
			for j := i; j < min(i+500, to); j++ {
				msgs = append(msgs, harness.Event(j, 1000, o.Size))
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return err
			}
		}
		return nil
	}
	if err := produce(0, o.Warmup); err != nil {
		return rep, err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	warm, err := harness.ReadPulsar(rctx, client, pulsarTopic, o.Warmup, 60*time.Second)
	cancel()
	if err != nil || len(warm) < o.Warmup {
		return rep, fmt.Errorf("warmup: %d of %d archived: %v", len(warm), o.Warmup, err)
	}
	rep.RSSBefore = rss(b.cmd.Process.Pid)
	logf("warmup %d archived; bridge RSS %d MiB", o.Warmup, rep.RSSBefore>>20)

	outage := exec.Command("sh", "-c", o.Outage)
	outage.Stdout, outage.Stderr = o.Out, o.Out
	if err := outage.Start(); err != nil {
		return rep, fmt.Errorf("pulsar outage: %w", err)
	}
	outageDone := make(chan error, 1)
	go func() { outageDone <- outage.Wait() }()
	down := time.Now()
	logf("pulsar outage started (%s); producing %d x %d B", o.Outage, o.N, o.Size)
	prodErr := make(chan error, 1)
	go func() { prodErr <- produce(o.Warmup, o.Warmup+o.N) }()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
wait:
	for {
		select {
		case err := <-outageDone:
			if err != nil {
				return rep, fmt.Errorf("pulsar outage command: %w", err)
			}
			break wait
		case <-t.C:
			rep.RSSPeak = max(rep.RSSPeak, rss(b.cmd.Process.Pid))
			rep.AnonPeak = max(rep.AnonPeak, procStatus(b.cmd.Process.Pid, "RssAnon"))
		}
	}
	back := time.Now()
	logf("pulsar back after %v; peak bridge RSS during outage %d MiB (bound %d MiB)", back.Sub(down).Round(time.Second), rep.RSSPeak>>20, o.RSSBound>>20)
	if err := <-prodErr; err != nil {
		return rep, err
	}
	rctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// The catch-up after the outage is sampled too: the bridge then holds full batches on both legs at once.
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				rep.AnonPeak = max(rep.AnonPeak, procStatus(b.cmd.Process.Pid, "RssAnon"))
			}
		}
	}()
	recs, err := harness.ReadPulsar(rctx, client, pulsarTopic, o.N+1, 20*time.Second)
	close(stopSampling)
	<-sampled
	if err != nil {
		return rep, err
	}
	recs = append(warm, recs...)
	rep.RecoverAfterOutage = time.Since(back)
	rep.RSSHighWater = procStatus(b.cmd.Process.Pid, "VmHWM")
	rep.RSSFile = procStatus(b.cmd.Process.Pid, "RssFile")
	rep.Verdict = harness.Judge(o.Warmup+o.N, recs)
	logf("verdict %v; drained %v after Pulsar returned (includes 20 s idle wait); bridge VmHWM %d MiB, RssAnon peak %d MiB, RssFile %d MiB",
		rep.Verdict, rep.RecoverAfterOutage.Round(time.Second), rep.RSSHighWater>>20, rep.AnonPeak>>20, rep.RSSFile>>20)
	return rep, nil
}

// rss reads a process's resident set size in bytes from /proc.
func rss(pid int) int64 { return procStatus(pid, "VmRSS") }

// procStatus reads a size field (in kB there) of a process's /proc status in bytes, 0 when it cannot.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
